"""novakit: Amazon Nova Sonic speech-to-speech voice agents on AWS."""

__version__ = "0.1.0"
