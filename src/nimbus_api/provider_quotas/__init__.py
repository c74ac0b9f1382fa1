"""Send quotas read from the provider's API where it has one (Amazon SES ``GetSendQuota``)."""
