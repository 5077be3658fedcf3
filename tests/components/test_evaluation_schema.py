"""EvaluationSchema: the validated schema cut to the columns TFMA reads, each read as a list."""

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from lamina.components.evaluation_schema import cut_schema


def test_the_cut_keeps_the_named_columns_their_types_and_order_and_nothing_else():
    full = text_format.Parse("""
        feature { name: "bill_length_mm" type: FLOAT presence { min_fraction: 1.0 } shape { dim { size: 1 } } }
        feature { name: "island" type: BYTES domain: "island" presence { min_fraction: 1.0 } shape { dim { size: 1 } } }
        feature { name: "year" type: INT int_domain { min: 2007 max: 2009 } }
        feature { name: "species" type: BYTES domain: "species" presence { min_fraction: 1.0 min_count: 1 } }
        string_domain { name: "island" value: "Biscoe" value: "Dream" }
        string_domain { name: "species" value: "Adelie" }
        """, schema_pb2.Schema())
    cut = cut_schema(full, ["species", "year", "island", "not_a_column"])
    assert text_format.MessageToString(cut) == ('feature {\n  name: "island"\n  type: BYTES\n}\n'
                                                'feature {\n  name: "year"\n  type: INT\n}\n'
                                                'feature {\n  name: "species"\n  type: BYTES\n}\n')
