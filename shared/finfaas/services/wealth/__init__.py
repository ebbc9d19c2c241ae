"""Wealth products: the catalogue and customers' orders (money-market funds, NAV funds, fixed terms)."""
