"""Rail: the external payment rail the transfer saga hands payments to, and its sandbox bank."""
