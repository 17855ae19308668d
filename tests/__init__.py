"""refapi's test suites: unit (no network), integration (real services and doubles), contract (black-box)."""
