"""Open Job Description (jobtemplate-2023-09): templates validated and expanded by openjd-model
into Puli graphs (translate.py); a node runs their steps with puli.commandwatcher.openjd."""
