"""The command line: parsing and rendering only; the work is in the library."""
