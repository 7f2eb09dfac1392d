"""Figures (matplotlib, Agg backend) and static HTML reports."""
