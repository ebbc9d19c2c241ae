"""Bureau: a SANDBOX credit bureau answering credit reports the loans function underwrites with."""
