"""The sending engine: rotation, dispatch, pooled and paced SMTP, message states, sweeping."""
