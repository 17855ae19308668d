"""Test helpers: a fault-injecting TCP proxy and a throwaway local Redis Cluster."""
