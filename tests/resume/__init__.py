"""Resume across crashes, and never a wrong file (issue 5): SIGKILL rounds, scripted
misbehaving servers, and journals that must not be trusted. See docs/resume.md."""
