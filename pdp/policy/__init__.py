"""Loading, analysing and checking the Rego policy bundle."""
