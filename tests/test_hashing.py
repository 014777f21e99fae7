"""The one dHash matches the definition in the holdout list's header, on a hand-computed image."""

from PIL import Image

from aidetect.data.hashing import dhash64, dhash_hex, hamming


def test_dhash_hand_computed():
    # An 9x8 grayscale image (no resize happens at 9x8): row r, column c has value v[r][c].
    # Row 0 rises left to right (all 8 bits 1); row 1 falls (all 0); the others alternate rise/fall.
    rows = [list(range(0, 90, 10)), list(range(90, 0, -10))] + [[0, 50] * 4 + [0]] * 6
    im = Image.new("L", (9, 8))
    im.putdata([v for row in rows for v in row])
    # row 0 -> 0xff (first bit most significant); row 1 -> 0x00; alternating 0,50,0,50..: 1,0,1,0.. -> 0xaa
    assert dhash_hex(dhash64(im)) == "ff00aaaaaaaaaaaa"
    # RGB and EXIF handling go through the same path: a grey RGB copy hashes the same
    assert dhash64(im.convert("RGB")) == dhash64(im)


def test_dhash_column_order_matters():
    im = Image.new("L", (9, 8))
    im.putdata([c * 20 for r in range(8) for c in range(9)])
    assert dhash64(im) == (1 << 64) - 1
    assert dhash64(im.transpose(Image.FLIP_LEFT_RIGHT)) == 0
    assert hamming(0b1011, 0b0001) == 2
