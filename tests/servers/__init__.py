"""Protocol-level doubles for servers that cannot be installed on the test machines."""
