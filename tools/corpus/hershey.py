"""Reader for the Hershey vector fonts (.jhf, hershey-fonts-data).

A glyph record is: 5 columns glyph number (unused here), 3 columns vertex
count N (the left/right bearing pair included), then N pairs of characters;
a record may wrap onto continuation lines. Coordinates are ord(c) - ord('R'),
y pointing down; the pair " R" lifts the pen. The fonts used here hold 96
glyphs in ASCII order from the space.
"""

MAX_GLYPHS = 4096


def parse(path):
    """[(left, right, strokes)] in file order; strokes are lists of (x, y)."""
    with open(path, encoding="latin-1") as f:
        lines = [ln.rstrip("\r\n") for ln in f]
    glyphs, buf = [], ""
    for ln in lines:
        if not ln and not buf:
            continue
        buf = buf + ln if buf else ln
        if len(buf) < 8:
            raise ValueError("%s: short glyph record" % path)
        n = int(buf[5:8])
        if len(buf) - 8 < 2 * n:
            continue  # record continues on the next line
        body = buf[8:8 + 2 * n]
        buf = ""
        left, right = ord(body[0]) - 82, ord(body[1]) - 82
        strokes, cur = [], []
        for i in range(2, 2 * n, 2):
            a, b = body[i], body[i + 1]
            if a == " " and b == "R":
                if cur:
                    strokes.append(cur)
                cur = []
            else:
                cur.append((ord(a) - 82, ord(b) - 82))
        if cur:
            strokes.append(cur)
        glyphs.append((left, right, strokes))
        if len(glyphs) > MAX_GLYPHS:
            raise ValueError("%s: too many glyphs" % path)
    if buf:
        raise ValueError("%s: truncated glyph record" % path)
    return glyphs


def ascii_glyph(glyphs, ch):
    """Strokes of character ch (space..tilde), or None."""
    i = ord(ch) - 32
    if 0 <= i < len(glyphs) and glyphs[i][2]:
        return glyphs[i][2]
    return None
