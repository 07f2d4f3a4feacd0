"""Writes test/fixtures/media/two_pages.pdf by hand (no PDF library): two pages of different
sizes, each with one filled rectangle at a known place, and a line of Helvetica text on page 1.

Page 1: 200x100 pt, red rectangle x 20..80, y 20..60 (PDF y grows upwards), text at (100, 70).
Page 2: 100x150 pt, blue rectangle covering the lower half (y 0..75).
Run:  python tools/reference/make_pdf_fixture.py
"""
import os

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "media", "two_pages.pdf")


def build(pages):
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, (w, h, content) in enumerate(pages):
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w} {h}] /Contents {5 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        data = content.encode()
        objs.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for k, body in enumerate(objs):
        offsets.append(len(out))
        out += f"{k + 1} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


if __name__ == "__main__":
    pdf = build([
        (200, 100, "1 0 0 rg 20 20 60 40 re f 0 g BT /F1 12 Tf 100 70 Td (qvl) Tj ET"),
        (100, 150, "0 0 1 rg 0 0 100 75 re f"),
    ])
    with open(OUT, "wb") as f:
        f.write(pdf)
    print(OUT, len(pdf), "bytes")
