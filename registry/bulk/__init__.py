"""Import and export items: the JSON-lines form of records that ``idnode import|export`` move.

``items`` (an item to a row and back, the general parser), ``fast`` (the common shape checked
without the general parser, for import speed), ``rules`` (what an import may write).
"""
