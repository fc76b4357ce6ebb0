"""Golden vectors (tests/vectors/*.hex) rebuilt with the Python API, byte for byte."""
from __future__ import annotations

import pytest

from conftest import load_vector
from shmring import ByteRingBuffer, framing, layout
from shmring.ring import validate_header

GEN = 0x1122334455667788
CAPS = ("video/x-raw, format=(string)GRAY8, width=(int)4, height=(int)2, "
        "framerate=(fraction)30/1")


def image(capacity: int) -> bytearray:
    return bytearray(layout.HEADER_SIZE + capacity)


def strip_mode_bits(img: bytearray) -> bytes:
    """Clears each side's own fence-mode bit (not part of the vectors, as in C++)."""
    img[layout.PRODUCER_FLAGS_OFFSET] &= ~layout.PRODUCER_MEMBARRIER & 0xFF
    img[layout.CONSUMER_FLAGS_OFFSET] &= ~layout.CONSUMER_MEMBARRIER & 0xFF
    return bytes(img)


def caps_message() -> bytes:
    return framing.encode_caps(CAPS)


def buffer_message() -> bytes:
    return framing.encode_buffer(bytes(range(8)), pts=1_000_000_000, duration=33_333_333,
                                 offset=7, offset_end=8, flags=0x40)


def eos_message() -> bytes:
    return framing.encode_eos()


def test_empty_ring():
    img = image(64)
    ByteRingBuffer.initialize(img, 64, 0, GEN)
    assert bytes(img) == load_vector("v2_empty_cap64.hex")


def test_owner_died():
    """The owner word after the kernel's robust-futex walk at the producer's death."""
    img = image(64)
    ByteRingBuffer.initialize(img, 64, 0, GEN)
    assert layout.PRODUCER_OWNER_OFFSET == 0x118
    img[layout.PRODUCER_OWNER_OFFSET:layout.PRODUCER_OWNER_OFFSET + 4] = \
        (layout.OWNER_WAITERS | layout.OWNER_DIED).to_bytes(4, "little")
    vector = bytearray(load_vector("v2_owner_died_cap64.hex"))
    assert bytes(img) == vector
    c = ByteRingBuffer(vector, False)  # an ordinary ring to open
    assert not c.owner_armed
    assert c.owner_look() and c.owner_marked
    assert c.take_owner_died() and not c.take_owner_died()


def test_records_hello_empty_twenty():
    img = image(64)
    ByteRingBuffer.initialize(img, 64, 0, GEN)
    p = ByteRingBuffer(img, True)
    assert p.write(b"hello")
    assert p.write(b"")
    assert p.write(bytes(range(20)))
    assert strip_mode_bits(img) == load_vector("v2_records_cap64.hex")


def test_wrap_marker():
    img = image(64)
    ByteRingBuffer.initialize(img, 64, 0, GEN)
    p = ByteRingBuffer(img, True)
    c = ByteRingBuffer(img, False)
    assert p.write(b"\xaa" * 40)
    assert c.read() == b"\xaa" * 40
    assert p.write(b"\xbb" * 16)
    assert strip_mode_bits(img) == load_vector("v2_wrap_marker_cap64.hex")


def test_pad_record():
    """A reservation given up is a PAD record; a reader skips it silently."""
    img = image(64)
    ByteRingBuffer.initialize(img, 64, 0, GEN)
    p = ByteRingBuffer(img, True)
    assert p.write(b"hello")
    view = p.reserve(20)
    assert view is not None
    del view
    p.abandon()
    assert p.write(b"\x01\x02")
    assert strip_mode_bits(img) == load_vector("v2_pad_cap64.hex")
    c = ByteRingBuffer(bytearray(load_vector("v2_pad_cap64.hex")), False)
    assert [c.read(), c.read(), c.read()] == [b"hello", b"\x01\x02", None]
    assert c.tail == 48


def test_index_wrap_at_2_to_32():
    img = image(64)
    ByteRingBuffer.initialize(img, 64, 0, GEN, start_index=0xFFFFFFE8)
    p = ByteRingBuffer(img, True)
    assert p.write(b"\xcc" * 12)
    assert p.write(b"\xdd" * 4)
    assert p.write(b"\xee")
    assert strip_mode_bits(img) == load_vector("v2_index_wrap_cap64.hex")


def test_version1_ring_refused():
    """A version 1 ring is refused naming both versions."""
    v1 = bytearray(load_vector("v1_empty_cap64.hex"))
    assert len(v1) == 192
    assert validate_header(v1) == ("version", "version is 1; this build reads version 2")
    with pytest.raises(Exception, match="version is 1; this build reads version 2"):
        ByteRingBuffer(v1, False)
    with pytest.raises(Exception, match="version is 1; this build reads version 2"):
        ByteRingBuffer(v1, True)
    assert bytes(v1) == load_vector("v1_empty_cap64.hex")  # never rewritten


@pytest.mark.parametrize("bad", [0, 17])
def test_max_receivers_out_of_range_refused(bad):
    img = bytearray(load_vector("v2_empty_cap64.hex"))
    img[layout.MAX_RECEIVERS_OFFSET:layout.MAX_RECEIVERS_OFFSET + 4] = bad.to_bytes(4, "little")
    assert validate_header(img) == (
        "max_receivers", f"max_receivers is {bad}, not between 1 and 16")


def test_layout_blocks():
    """Each hot word and each flags word alone in its 128-byte block; data page-aligned."""
    blocks = [o // layout.BLOCK_SIZE for o in (layout.HEAD_OFFSET, layout.PRODUCER_FLAGS_OFFSET,
                                               layout.TAIL_OFFSET, layout.CONSUMER_FLAGS_OFFSET)]
    assert blocks == [1, 2, 4, 5]
    assert layout.HEADER_SIZE % 4096 == 0
    assert layout.slot_offset(15) + layout.SLOT_SIZE <= layout.HEADER_SIZE
    assert (layout.MAGIC_OFFSET, layout.VERSION_OFFSET) == (12, 16)


def test_profile1_messages_encode():
    assert caps_message() == load_vector("p1_caps.hex")
    assert buffer_message() == load_vector("p1_buffer.hex")
    assert eos_message() == load_vector("p1_eos.hex")


def test_profile1_ring():
    img = image(512)
    ByteRingBuffer.initialize(img, 512, 1, 0x0123456789ABCDEF)
    p = ByteRingBuffer(img, True)
    for message in (caps_message(), buffer_message(), eos_message()):
        assert p.write(message)
    assert strip_mode_bits(img) == load_vector("p1_ring_cap512.hex")


@pytest.mark.parametrize("vector,kind,body", [
    ("p1_caps.hex", framing.KIND_CAPS, CAPS.encode()),
    ("p1_buffer.hex", framing.KIND_BUFFER, bytes(range(8))),
    ("p1_eos.hex", framing.KIND_EOS, b""),
])
def test_profile1_messages_decode(vector, kind, body):
    header, view = framing.decode_message(load_vector(vector))
    assert header.kind == kind
    assert header.header_size == 60
    assert bytes(view) == body
    if kind == framing.KIND_BUFFER:
        assert (header.flags, header.pts, header.dts, header.duration, header.offset,
                header.offset_end, header.send_time_ns) == (
                    0x40, 1_000_000_000, None, 33_333_333, 7, 8, 0)
    else:
        assert (header.flags, header.pts, header.dts, header.duration, header.offset,
                header.offset_end) == (0, None, None, None, None, None)


def test_profile1_ring_decodes_back():
    """Reading the profile-1 ring vector yields the three messages of its recipe."""
    img = bytearray(load_vector("p1_ring_cap512.hex"))
    c = ByteRingBuffer(img, False)
    assert c.read() == caps_message()
    assert c.read() == buffer_message()
    assert c.read() == eos_message()
    assert c.read() is None


def test_decode_refuses_short_or_lying_headers():
    v = bytearray(load_vector("p1_eos.hex"))
    with pytest.raises(framing.FramingError, match="shorter"):
        framing.decode_header(v, 0, 55)
    v[2] = 40
    with pytest.raises(framing.FramingError, match="below the minimum"):
        framing.decode_message(v)
    v[2] = 200
    with pytest.raises(framing.FramingError, match="past the end"):
        framing.decode_message(v)


def ext_vector_extensions() -> bytes:
    return (framing.ext_audio_clipping(framing.AudioClipping(2, 312, 0))
            + framing.ext_video_meta(framing.VideoMeta(0, 25, 4, 2, 1, (0,), (8,)))
            + framing.ext_reference_timestamp(
                framing.ReferenceTimestamp("timestamp/x-ntp", 3_900_000_000_000_000_000, None)))


def test_profile1_buffer_with_extensions_encodes():
    """A negative dts becomes dts none + NEGATIVE_DTS (first entry), metas follow."""
    m = framing.encode_buffer(bytes(range(16)), pts=0, dts=-66_666_667, duration=33_333_333,
                              offset=0, flags=0x40, extensions=ext_vector_extensions())
    assert m == load_vector("p1_buffer_ext.hex")


def test_profile1_buffer_with_extensions_decodes():
    header, view = framing.decode_message(load_vector("p1_buffer_ext.hex"))
    assert (header.header_size, header.pts, header.dts) == (212, 0, -66_666_667)
    assert bytes(view) == bytes(range(16))
    ext = framing.parse_extensions(header.extensions)
    assert ext.negative_dts == 66_666_667
    assert ext.audio_clipping == framing.AudioClipping(2, 312, 0)
    assert ext.video_meta == framing.VideoMeta(0, 25, 4, 2, 1, (0, 0, 0, 0), (8, 0, 0, 0))
    assert ext.reference_timestamps == (
        framing.ReferenceTimestamp("timestamp/x-ntp", 3_900_000_000_000_000_000, None),)


def test_extensions_skip_unknown_types_and_refuse_overruns():
    area = framing.ext_entry(999, b"\x01\x02\x03\x04\x05") + framing.ext_negative_dts(5)
    assert framing.parse_extensions(area).negative_dts == 5
    bad = bytearray(area)
    bad[2] = 200
    with pytest.raises(framing.FramingError, match="runs past header_size"):
        framing.parse_extensions(bad)
