"""Case work used by the console (and, where they share it, the bot): accounts and keys of
staff, the audit log, the inbox and the workflow of a case."""
