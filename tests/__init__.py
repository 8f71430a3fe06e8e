"""The test suite: one folder per sub-package of fastnst (plus the scripts), shared helpers here."""
