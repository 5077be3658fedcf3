"""Reading finished runs: one ML Metadata reader (`metadata`), the run summary (`summary`), `lamina runs`
and lineage (`history`), and the HTML report (`report`, `plots`). Nothing here runs a pipeline."""
