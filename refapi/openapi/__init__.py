"""The contract-first layer: operation declarations, request validation, spec generation and docs pages."""
