"""Lambda entry points. Each turns an AWS event into ordercast's types, calls
the shared core, and shapes the reply; nothing else lives here."""
