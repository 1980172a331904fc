"""Feature-crossing modules, one file per family.

Every crossing module takes the LayerNormed concatenation of a tower's feature fields,
a tensor of shape (batch, num_fields * field_dim), and returns (batch, output_dim).
Constructors take `num_fields` and `field_dim` first (the tower supplies them), the
family's hyperparameters after; configs build them with `_partial_: true`.
"""
