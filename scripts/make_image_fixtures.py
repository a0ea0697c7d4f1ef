#!/usr/bin/env python3
"""Generates the image fixtures of Tests/QuadraDataTests/Fixtures (run once; the outputs are committed).

PNG: an independent encoder (zlib + struct only) writes every colour type x bit depth x interlace
combination of a 13x11 image (odd sizes leave Adam7 passes partly empty), cycling the five filter types
row by row, plus deliberately broken files. Next to each good `NAME.png` it writes `NAME.expected`: the
8-bit HWC pixels the decoder must return, computed here from the documented rules (alpha dropped, 16-bit
scaled with (v * 255 + 32767) // 65535, low gray depths scaled by 255 / (2^depth - 1), palette expanded).

JPEG: cjpeg (Debian package libjpeg-turbo-progs) compresses a smooth 32x24 RGB gradient and a gray one;
the source PPM/PGM are kept as the reference (JPEG is lossy: tests compare within a tolerance).

NPZ: numpy.savez_compressed writes numpy_savez.npz (images: uint8 arange(24) in shape [2, 3, 4];
labels: float32 [0.5, -1.25, 3.0]).

Usage: python3 scripts/make_image_fixtures.py [output-dir]
"""
import os
import struct
import subprocess
import sys
import zlib

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/QuadraDataTests/Fixtures"
WIDTH, HEIGHT = 13, 11
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
DEPTHS = {0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]}


def chunk(kind, data, crc=None):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) if crc is None else crc)


def ihdr(width, height, depth, colour, interlace):
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def sample(x, y, c, depth):
    """A deterministic value in 0 ..< 2^depth that varies with position and channel."""
    value = x * 37 + y * 91 + c * 53 + x * y * 7
    # Spread 16-bit samples over the whole range, so the scaling to 8 bits is tested everywhere.
    return (value * 331 if depth == 16 else value) % (1 << depth)


def palette_size(depth):
    return min(1 << depth, 200)


def pixel_samples(x, y, colour, depth):
    if colour == 3:
        return [sample(x, y, 0, depth) % palette_size(depth)]
    return [sample(x, y, c, depth) for c in range(SAMPLES[colour])]


def pack_row(values, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", v) for v in values)
    if depth == 8:
        return bytes(values)
    out, acc, bits = bytearray(), 0, 0
    for v in values:
        acc = (acc << depth) | v
        bits += depth
        if bits == 8:
            out.append(acc)
            acc, bits = 0, 0
    if bits:
        out.append(acc << (8 - bits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_row(kind, row, previous, stride):
    out = bytearray([kind])
    for i, x in enumerate(row):
        a = row[i - stride] if i >= stride else 0
        b = previous[i] if previous is not None else 0
        c = previous[i - stride] if previous is not None and i >= stride else 0
        predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out.append((x - predictor) & 0xFF)
    return bytes(out)


def scanlines(colour, depth, interlace, width=WIDTH, height=HEIGHT):
    stride = max(1, SAMPLES[colour] * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    data, row_index = bytearray(), 0
    for x0, y0, dx, dy in passes:
        xs, ys = list(range(x0, width, dx)), list(range(y0, height, dy))
        if not xs or not ys:
            continue
        previous = None
        for y in ys:
            values = [v for x in xs for v in pixel_samples(x, y, colour, depth)]
            row = pack_row(values, depth)
            data += filter_row(row_index % 5, row, previous, stride)
            previous, row_index = row, row_index + 1
    return bytes(data)


def palette(depth):
    return bytes((i * 23 + k * 71) % 256 for i in range(palette_size(depth)) for k in range(3))


def expected(colour, depth):
    out = bytearray()
    for y in range(HEIGHT):
        for x in range(WIDTH):
            values = pixel_samples(x, y, colour, depth)
            if colour == 3:
                out += palette(depth)[3 * values[0] : 3 * values[0] + 3]
                continue
            values = values[:1] if colour in (0, 4) else values[:3]
            for v in values:
                if depth == 16:
                    out.append((v * 255 + 32767) // 65535)
                else:
                    out.append(v * 255 // ((1 << depth) - 1))
    return bytes(out)


def png(colour, depth, interlace, idat=None, extra=b"", split=True):
    parts = [b"\x89PNG\r\n\x1a\n", ihdr(WIDTH, HEIGHT, depth, colour, interlace)]
    parts.append(chunk(b"tEXt", b"Comment\x00fixture"))  # an ancillary chunk to skip
    if colour == 3:
        parts.append(chunk(b"PLTE", palette(depth)))
        parts.append(chunk(b"tRNS", bytes([128] * 3)))  # ignored: alpha is dropped
    parts.append(extra)
    stream = zlib.compress(scanlines(colour, depth, interlace), 9) if idat is None else idat
    # Several IDAT chunks, to test their concatenation.
    pieces = [stream[i : i + 40] for i in range(0, len(stream), 40)] if split else [stream]
    parts += [chunk(b"IDAT", p) for p in pieces]
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    for colour, depths in DEPTHS.items():
        for depth in depths:
            for interlace in (0, 1):
                name = f"png_c{colour}_d{depth}_{'adam7' if interlace else 'plain'}"
                write(name + ".png", png(colour, depth, interlace))
                write(name + ".expected", expected(colour, depth))

    good = png(2, 8, 0)
    # Broken files (each must be rejected with a specific error).
    raw = scanlines(2, 8, 0)
    write("bad_filter.png", png(2, 8, 0, idat=zlib.compress(b"\x05" + raw[1:])))
    write("idat_short.png", png(2, 8, 0, idat=zlib.compress(raw[:-7])))
    write("idat_long.png", png(2, 8, 0, idat=zlib.compress(raw + b"\x00" * 40)))
    write("unknown_critical.png", png(2, 8, 0, extra=chunk(b"ABCD", b"xyz")))
    header_only = b"\x89PNG\r\n\x1a\n"
    write("zero_width.png", header_only + ihdr(0, 5, 8, 2, 0) + chunk(b"IEND", b""))
    write("huge_65536.png", header_only + ihdr(65536, 65536, 8, 2, 0) + chunk(b"IEND", b""))
    write("huge_65535.png", header_only + ihdr(65535, 65535, 8, 6, 0) + chunk(b"IEND", b""))
    bad_palette = png(3, 8, 0).replace(chunk(b"PLTE", palette(8)), chunk(b"PLTE", palette(8)[:3 * 100]))
    write("palette_out_of_range.png", bad_palette)
    # The CRC of IHDR is off by one.
    ihdr_chunk = ihdr(WIDTH, HEIGHT, 8, 2, 0)
    write("bad_crc.png", good.replace(ihdr_chunk, ihdr_chunk[:-4] + struct.pack(">I", (zlib.crc32(ihdr_chunk[4:-4]) + 1) & 0xFFFFFFFF)))

    # JPEG: smooth images survive compression with small errors.
    w, h = 32, 24
    rgb = bytes(v for y in range(h) for x in range(w) for v in (x * 8, y * 10, 128 + (x - y) * 2))
    gray = bytes((x * 5 + y * 4) for y in range(h) for x in range(w))
    write("jpeg_rgb.ppm", b"P6\n%d %d\n255\n" % (w, h) + rgb)
    write("jpeg_gray.pgm", b"P5\n%d %d\n255\n" % (w, h) + gray)
    for name, source in (("jpeg_rgb", "jpeg_rgb.ppm"), ("jpeg_gray", "jpeg_gray.pgm")):
        with open(os.path.join(OUT, source), "rb") as f:
            jpeg = subprocess.run(["cjpeg", "-quality", "95"], input=f.read(), capture_output=True, check=True).stdout
        write(name + ".jpg", jpeg)

    # NPZ as NumPy itself writes it (deflated members with zip64 extras), when numpy is installed.
    try:
        import numpy
    except ImportError:
        print("numpy is missing: numpy_savez.npz not written (pip install numpy)")
        return
    numpy.savez_compressed(
        os.path.join(OUT, "numpy_savez.npz"),
        images=numpy.arange(2 * 3 * 4, dtype=numpy.uint8).reshape(2, 3, 4),
        labels=numpy.array([0.5, -1.25, 3.0], dtype=numpy.float32),
    )


if __name__ == "__main__":
    main()
