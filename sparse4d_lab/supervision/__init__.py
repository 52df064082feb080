"""Matching, classification schemes (the arms of a study) and box/quality losses."""
