"""Enrollments: contacts on their way through a campaign's steps, and the public unsubscribe link."""
