"""actsearch.search_spaces — how candidates are generated and mutated (issue #5)."""
