"""Open Job Description (jobtemplate-2023-09): templates validated and expanded by openjd-model
into Puli graphs (see translate.py), and what the node needs to run their steps (session.py)."""
