"""What both deployables (proxy/ and pdp/) share; neither imports the other."""
