"""The `lamina` command: the parser and the verbs (`commands`), the serving verbs (`serve`), `lamina init`
(`starter`), `lamina demo` (`demos`, `datasets`). The top room: it may use every other, and nothing
of Lamina's imports it."""

from lamina.pipeline.cli.commands import main

__all__ = ["main"]
