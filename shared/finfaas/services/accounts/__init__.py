"""The accounts capability: customers open and read their accounts; operators freeze and close them."""
