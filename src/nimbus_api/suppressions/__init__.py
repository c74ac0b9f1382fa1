"""The workspace suppression list: addresses never sent to again."""
