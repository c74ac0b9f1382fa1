"""The arq worker edge: settings, typed context, task transactions."""
