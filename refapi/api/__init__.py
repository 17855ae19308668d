"""HTTP operations, one module per API area; each exposes `routes` (a RouteTableDef)."""
