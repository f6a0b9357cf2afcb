"""The streamsim command line and the runtime pieces the components share:
connection settings, Google client factories, provisioning, the local stack."""
