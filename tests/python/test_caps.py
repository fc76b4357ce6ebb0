"""Caps parsing and raw-video layouts, checked against GStreamer's GstVideoInfo when present."""
from __future__ import annotations

from fractions import Fraction

import pytest

from shmring import caps as capsmod
from shmring.caps import layout_from_caps, parse_caps, video_layout


def test_parse_caps_fields_and_types():
    media, fields = parse_caps(
        'video/x-raw(memory:SystemMemory), format=(string)NV12, width=(int)1920, '
        'height=(int)1080, framerate=(fraction)30000/1001, interlace-mode=(string)progressive, '
        'colorimetry=(string)"bt709", pixel-aspect-ratio=(fraction)1/1, foo=(boolean)true')
    assert media == "video/x-raw"
    assert fields["format"] == "NV12" and fields["width"] == 1920 and fields["height"] == 1080
    assert fields["framerate"] == Fraction(30000, 1001)
    assert fields["colorimetry"] == "bt709" and fields["foo"] is True


def test_parse_caps_nested_lists_do_not_split():
    media, fields = parse_caps("video/x-raw, format={ (string)I420, (string)NV12 }, width=(int)4")
    assert media == "video/x-raw" and fields["width"] == 4
    assert "I420" in str(fields["format"])


def test_non_video_caps_have_no_layout():
    assert layout_from_caps("audio/x-raw, format=(string)S16LE, rate=(int)48000") is None
    assert layout_from_caps("video/x-raw, format=(string)UYVP, width=(int)4, height=(int)2") \
        is None


@pytest.mark.parametrize("fmt,w,h,shape0", [
    ("BGR", 5, 3, (3, 5, 3)), ("RGBA", 4, 2, (2, 4, 4)), ("GRAY8", 7, 5, (5, 7)),
    ("GRAY16_LE", 5, 3, (3, 5)), ("I420", 5, 3, (3, 5)), ("NV12", 6, 4, (4, 6)),
])
def test_first_plane_shapes(fmt, w, h, shape0):
    assert video_layout(fmt, w, h).planes[0].shape == shape0


SIZES = [(4, 2), (5, 3), (7, 5), (642, 361), (1920, 1080)]


@pytest.mark.parametrize("fmt", capsmod.SUPPORTED_FORMATS)
def test_layouts_match_gstreamer_video_info(fmt):
    gi = pytest.importorskip("gi")
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstVideo", "1.0")
        from gi.repository import Gst, GstVideo
    except (ValueError, ImportError):
        pytest.skip("GstVideo introspection data not installed")
    Gst.init(None)
    for w, h in SIZES:
        info = GstVideo.VideoInfo.new_from_caps(
            Gst.Caps.from_string(f"video/x-raw,format={fmt},width={w},height={h}"))
        ours = video_layout(fmt, w, h)
        n = info.finfo.n_planes
        assert ours.size == info.size, (fmt, w, h)
        assert [p.stride for p in ours.planes] == list(info.stride[:n]), (fmt, w, h)
        assert [p.offset for p in ours.planes] == list(info.offset[:n]), (fmt, w, h)


UNTYPED = [
    "video/x-raw,format=BGR,width=64,height=48",
    "video/x-raw, format=GRAY8, width=13, height=7, framerate=30/1",
    "video/x-raw,format=I420,width=0x40,height=48,pixel-aspect-ratio=1/1,interlaced=false",
    "video/x-raw,format=NV12,width=64,height=48,quality=0.5",
]


@pytest.mark.parametrize("caps", UNTYPED)
def test_untyped_values_are_deduced_as_gstreamer_does(caps):
    layout = layout_from_caps(caps)
    assert layout is not None, caps
    typed = caps.replace("width=0x40", "width=64")
    media, fields = parse_caps(caps)
    assert isinstance(fields["width"], int) and isinstance(fields["height"], int)
    assert isinstance(fields["format"], str)
    try:
        import gi
        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError):
        return  # GStreamer absent: the deduction rule above still holds
    Gst.init(None)
    structure = Gst.Caps.from_string(typed).get_structure(0)
    for key, value in fields.items():
        if "0x40" in caps and key == "width":
            value = 64
        gst_value = structure.get_value(key)
        if isinstance(value, Fraction):
            assert structure.get_fraction(key)[1:] == (value.numerator, value.denominator)
        else:
            assert type(gst_value) is type(value) and gst_value == value, (key, gst_value)
