"""Small shared building blocks: database, problems, crypto, ids, pagination."""
