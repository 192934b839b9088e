"""The domain: code book, cases, patterns and their rules. No I/O and no clock of its own."""
