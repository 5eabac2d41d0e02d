"""The emulated robot cell: the twin's scene behind hardware interfaces, with a reality gap (docs/cell.md)."""
