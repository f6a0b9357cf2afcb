"""The runtime every component shares: settings, cached clients, the one Bigtable
gateway, provisioning and background processes. Imports only :mod:`schemas`."""
