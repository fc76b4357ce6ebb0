"""Frames of a profile-1 ring: FrameReader (caps, timestamps, zero-copy numpy) and FrameWriter.

A ring written by ``shmringsink`` (or by :class:`FrameWriter`, or a C++ program
using ``shm::framing``) carries CAPS, BUFFER and EOS messages. FrameReader turns
them into :class:`Frame` objects whose ``.array`` is a numpy view straight into
the ring, shaped from the caps.
"""
from __future__ import annotations

import sys
import time
import warnings
from collections import deque
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional,
                    Tuple)

from ._aio import run_interruptibly
from ._tuning import LIVENESS_SLICE_S
from .caps import VideoLayout, layout_from_caps, layout_with_strides, parse_caps
from .channel import ShmConsumer, ShmProducer
from .errors import (FramingError, IncompatibleSegmentError, RingInterruptedError,
                     RingNotFoundError, RingTimeoutError, StreamTruncatedError,
                     ViewInUseError)
from .framing import (HEADER_SIZE as MESSAGE_HEADER_SIZE, KIND_BUFFER, KIND_CAPS, KIND_EOS,
                      MIN_HEADER_SIZE, TIME_NONE, Extensions, MessageHeader, VideoMeta,
                      decode_header, encode_caps, encode_eos, encode_header, monotonic_ns,
                      parse_extensions, unpack_header)
from .interrupter import Interrupter
from .layout import (CONSUMER_ATTACH_COUNT_SHIFT, INDEX_MASK, INFO_MAX, PRODUCER_WAITING,
                     PROFILE_GST_FRAMING)
from .ring import WAIT_CHECK

# How long the producer must have waited for space, its head unchanged, while this
# reader holds frames before read_frame calls it the hoarding deadlock
# (ViewInUseError): a whole liveness slice (the producer's own look interval).
_HOARDING_S = LIVENESS_SLICE_S

if TYPE_CHECKING:
    import numpy.typing as npt

    #: A numpy array of any dtype (the frame's dtype comes from its caps).
    Array = npt.NDArray[Any]
else:
    Array = Any


_np: Any = None
_PLANE_ARGS: Dict[VideoLayout, Tuple[Tuple[Any, ...], ...]] = {}
# id(layout) -> (layout, np.ndarray, shape, dtype, offset, strides) of Frame.array, once
# per layout object (keyed by identity: hashing a VideoLayout hashes all its planes; the
# layout in the value keeps the id from being reused while the entry exists).
_ARRAY_ARGS: Dict[int, Tuple[Any, ...]] = {}
_ARRAY_ARGS_MAX = 64
_DELTA_UNIT = 1 << 13  # GST_BUFFER_FLAG_DELTA_UNIT: not decodable on its own
_DISCONT = 1 << 6  # GST_BUFFER_FLAG_DISCONT: buffers before this one are missing
#: What ``Frame.extensions`` holds for a message without header extensions.
NO_EXTENSIONS = Extensions()


def _numpy() -> Any:
    """numpy, imported on first use (the package works without it until .array)."""
    global _np
    if _np is None:
        import numpy
        _np = numpy
    return _np


def _plane_args(layout: VideoLayout) -> Tuple[Tuple[Any, ...], ...]:
    """(shape, dtype, offset, strides) per plane, computed once per layout."""
    args = _PLANE_ARGS.get(layout)
    if args is None:
        np = _numpy()
        planes = []
        for p in layout.planes:
            dtype = np.dtype(p.dtype)
            inner: Tuple[int, ...] = (dtype.itemsize,)
            if len(p.shape) == 3:
                inner = (p.shape[2] * dtype.itemsize, dtype.itemsize)
            planes.append((p.shape, dtype, p.offset, (p.stride,) + inner))
        args = _PLANE_ARGS[layout] = tuple(planes)
    return args


def _array_args(layout: VideoLayout) -> Tuple[Any, ...]:
    """(layout, np.ndarray, shape, dtype, offset, strides) of Frame.array for ``layout``
    (frames of at least ``layout.size`` bytes), computed once per layout object."""
    args = _ARRAY_ARGS.get(id(layout))
    if args is None or args[0] is not layout:
        np = _numpy()
        if layout.packed:
            shape, dtype, offset, strides = _plane_args(layout)[0]
        else:
            w, h = layout.width, layout.height
            tight = w % 2 == 0 and h % 2 == 0 and layout.planes[0].stride == w and \
                layout.size == w * h * 3 // 2
            # Tight I420/NV12-like: the usual (h * 3 // 2, w) array; else the bytes.
            shape = (h * 3 // 2, w) if tight else (layout.size,)
            dtype, offset, strides = np.dtype(np.uint8), 0, None
        if len(_ARRAY_ARGS) >= _ARRAY_ARGS_MAX:
            _ARRAY_ARGS.clear()
        args = _ARRAY_ARGS[id(layout)] = (layout, np.ndarray, shape, dtype, offset, strides)
    return args


class Frame:
    """One video buffer read from the ring, valid for as long as it is referenced.

    ``caps`` (str, the caps in effect for this buffer), ``pts``/``dts``/``duration``
    (int ns or None; ``dts`` is negative when it lies before running time 0, an
    encoder's first B-frame buffers), ``offset``/``offset_end`` (int or None), ``flags``
    (GstBufferFlags), ``send_time_ns`` (writer's CLOCK_MONOTONIC, 0 unknown),
    ``extensions`` (:class:`shmring.framing.Extensions`: the metas the sender carried
    in the message's header extensions: negative DTS, audio clipping, video meta,
    reference timestamps), ``data`` (read-only memoryview into the ring), ``array``
    and ``planes`` (numpy, zero-copy; a frame carrying a video meta is shaped with
    its plane offsets and strides, as GStreamer maps it). A Frame, its ``data``,
    ``array`` or ``planes`` (or anything made from them) that is still referenced
    pins its record: the ring space is given back, in
    ring order, once nothing references any of them. Keeping many frames starves the
    producer: FrameReader raises ViewInUseError when the producer has been waiting for
    the space they hold for a whole liveness slice. Copy what you keep long
    (``frame.array.copy()``).
    """

    __slots__ = ("caps", "pts", "dts", "duration", "offset", "offset_end", "flags",
                 "send_time_ns", "data", "layout", "extensions", "_array", "_planes")

    def __init__(self, caps: Optional[str], layout: Optional[VideoLayout],
                 header: MessageHeader, data: memoryview) -> None:
        # (FrameReader.read_frame builds its frames from the raw header fields.)
        self.caps = caps
        self.extensions = NO_EXTENSIONS
        if header.extensions:
            self.extensions = parse_extensions(header.extensions)
            meta = self.extensions.video_meta
            if meta is not None and layout is not None:
                layout = _meta_layout(layout, meta)
        self.layout = layout
        self.pts = header.pts
        self.dts = header.dts
        self.duration = header.duration
        self.offset = header.offset
        self.offset_end = header.offset_end
        self.flags = header.flags
        self.send_time_ns = header.send_time_ns
        self.data = data
        self._array: Optional[Array] = None
        self._planes: Optional[Tuple[Array, ...]] = None

    @property
    def width(self) -> Optional[int]:
        return self.layout.width if self.layout else None

    @property
    def height(self) -> Optional[int]:
        return self.layout.height if self.layout else None

    @property
    def format(self) -> Optional[str]:
        return self.layout.format if self.layout else None

    def _check_size(self) -> VideoLayout:
        layout = self.layout
        assert layout is not None
        if self.data.nbytes < layout.size:
            raise ValueError(
                f"frame has {self.data.nbytes} bytes but caps {layout.format} "
                f"{layout.width}x{layout.height} need {layout.size}")
        return layout

    @property
    def planes(self) -> Tuple[Array, ...]:
        """numpy views of each plane (Y, U, V for I420; Y, UV for NV12; one for packed)."""
        if self._planes is None:
            np = _numpy()
            if self.layout is None:
                self._planes = (np.frombuffer(self.data, dtype=np.uint8),)
            else:
                layout = self._check_size()
                ndarray, data = np.ndarray, self.data
                self._planes = tuple(ndarray(shape, dtype, data, offset, strides)
                                     for shape, dtype, offset, strides in _plane_args(layout))
        return self._planes

    @property
    def array(self) -> Array:
        """The frame as one numpy array, zero-copy and read-only.

        Packed RGB-like formats: (height, width, channels); GRAY8/GRAY16: (height,
        width). I420/YV12/NV12/NV21 with tight rows (even size, no row padding): the
        usual (height * 3 // 2, width) uint8 layout (e.g. for cv2.cvtColor); with
        padded rows: the frame's bytes as a 1-D uint8 array (use ``planes``). No
        known video caps: the bytes as a 1-D uint8 array.

        Read-only by numpy's ``writeable`` flag only: the memory is the ring's, mapped
        writable in this process, and code that writes through the buffer without
        looking at the flag (OpenCV's ``dst=`` arguments, ctypes, C extensions) writes
        into the ring, where the producer will overwrite it. To modify a frame, take
        :meth:`writable_array` (a copy).
        """
        array = self._array
        if array is None:
            layout = self.layout
            if layout is None:
                array = _numpy().frombuffer(self.data, dtype=_numpy().uint8)
            else:
                data = self.data
                if data.nbytes < layout.size:
                    self._check_size()  # raises ValueError naming the sizes
                args = _ARRAY_ARGS.get(id(layout))
                if args is None or args[0] is not layout:
                    args = _array_args(layout)
                array = args[1](args[2], args[3], data, args[4], args[5])
                if layout.packed and self._planes is None:
                    self._planes = (array,)  # the one plane is the array
            self._array = array
        return array

    def writable_array(self) -> Array:
        """A writable copy of :attr:`array` (same shape), owned by the caller: it pins
        nothing and writing to it never touches the ring. Any thread; never blocks."""
        return self.array.copy()

    def _drop(self) -> None:
        self._array = None
        self._planes = None

    def __repr__(self) -> str:
        shape = f"{self.format} {self.width}x{self.height}" if self.layout else "raw"
        return f"<Frame {shape} pts={self.pts} bytes={self.data.nbytes}>"


_new_frame = object.__new__
_getrefcount = sys.getrefcount


# (id(layout), offsets, strides) -> (layout, the layout shaped by that video meta)
_META_LAYOUTS: Dict[Tuple[int, Tuple[int, ...], Tuple[int, ...]],
                    Tuple[VideoLayout, VideoLayout]] = {}
_META_LAYOUTS_MAX = 64


def _meta_layout(layout: VideoLayout, meta: VideoMeta) -> VideoLayout:
    """``layout`` (from the caps) with the plane offsets and strides of the buffer's
    GstVideoMeta, cached per (layout object, offsets, strides). A meta that does not
    describe the caps' frame (another size or plane count) or cannot (a stride shorter
    than a row) is refused with a FramingError naming both."""
    key = (id(layout), meta.offsets, meta.strides)
    cached = _META_LAYOUTS.get(key)
    if cached is not None and cached[0] is layout:
        return cached[1]
    n = len(layout.planes)
    if (meta.width, meta.height, meta.n_planes) != (layout.width, layout.height, n):
        raise FramingError(
            f"the buffer's video meta describes a {meta.width}x{meta.height} frame of "
            f"{meta.n_planes} plane(s), the caps a {layout.format} {layout.width}x"
            f"{layout.height} frame of {n}")
    try:
        shaped = layout_with_strides(layout, meta.offsets[:n], meta.strides[:n])
    except ValueError as e:
        raise FramingError(f"the buffer's video meta cannot shape a {layout.format} "
                           f"{layout.width}x{layout.height} frame: {e}") from None
    if len(_META_LAYOUTS) >= _META_LAYOUTS_MAX:
        _META_LAYOUTS.clear()
    _META_LAYOUTS[key] = (layout, shaped)
    return shaped


# An acquired record, in ring order, released once nothing uses it: a list
# [end, held, frame] (a literal is cheaper to make than an object, once per record).
_END, _HELD, _FRAME = 0, 1, 2
_Entry = List[Any]


class _HandedOver(Exception):
    """Raised inside FrameReader.read_frame when its ring ended CLOSED, was read to its
    end and was handed over: caught there, outside the consumer's call, to follow."""


class FrameReader:
    """Iterates the frames of profile-1 ring ``name`` (written by shmringsink or FrameWriter).

    Waits up to ``timeout`` seconds for the producer (None = no limit). Iteration
    blocks for the next frame and ends at EOS;
    ProducerDeadError / ProducerReplacedError end it when the producer is gone.
    ``latest=True`` skips frames already superseded by newer ones in the ring
    (live view: always the newest), keeping the caps of skipped CAPS messages;
    ``skipped`` counts them. Each Frame stays valid for as long as it (or its data,
    array, planes) is referenced; ring space is only reused once nothing references
    it. Consumer side.

    A live stream (the producer sets producer_flags LIVE) is read from what is
    published after the attach: frames already in the ring are skipped (their caps
    still apply), and so are delta units before the first key frame. A ring that
    is CLOSED and already read to its end is not a new stream: the reader waits
    for the producer's next ring. A stream that ends without its EOS record (the
    producer stopped early) raises StreamTruncatedError, unless the ring was handed
    over (shmringsink moving the stream to a larger ring at a caps change;
    :meth:`ShmProducer.release_name`, :meth:`ShmConsumer.handed_over`): then the
    reader, having read everything the old ring held, opens the name again with the
    same options and goes on in the new ring, as shmringsrc does: no frame lost, its
    CAPS record applied first (the frames' shapes change with it), the new ring read
    from its oldest record (its backlog is the stream's continuation, not stale
    frames). Frames of the old ring still referenced stay valid: its mapping goes
    with the last of them.

    ``mode`` on a ring several receivers read (the producer's ``max_receivers``):
    ``"lossless"`` (the producer waits for this reader), ``"live"`` (never holds the
    producer back; when behind, resumes at the newest key frame still in the ring:
    ``ring_skips``) or ``"auto"`` (the
    default: live on a live ring with several receiver slots, else lossless). A
    reader that joins after the stream's CAPS record was reused starts with the
    caps the producer keeps in the ring header.
    """

    def __init__(self, name: str, timeout: Optional[float] = None, latest: bool = False,
                 mode: str = "auto") -> None:
        self._mode = mode
        # Reaches the waits of every ring this reader reads (it follows hand-overs) and
        # the wait for the name while it re-opens it: interrupt() works throughout.
        self._interrupter = Interrupter()
        self._latest = latest
        self._caps: Optional[str] = None
        self._layout: Optional[VideoLayout] = None
        self._layouts: Dict[str, Optional[VideoLayout]] = {}
        self._entries: Deque[_Entry] = deque()
        self._done = False
        self._eos_next = False
        self._stuck_head: Optional[int] = None
        self._stuck_since = 0.0  # time.monotonic() when _stuck_head was first seen
        self.skipped = 0
        self._take(self._open(name, timeout), False)

    def _open(self, name: str, timeout: Optional[float]) -> ShmConsumer:
        """A consumer of ring ``name`` with this reader's options; refuses (and
        closes) a ring that is not profile 1."""
        consumer = ShmConsumer(name, timeout=timeout, wait_for_open_producer=True,
                               mode=self._mode, interrupter=self._interrupter)
        profile = consumer.ring.profile
        if profile != PROFILE_GST_FRAMING:
            consumer.close()
            raise IncompatibleSegmentError(
                f"ring {name!r} has profile {profile}; FrameReader reads profile 1 "
                "(GStreamer framing). Use ShmConsumer for opaque messages", "profile")
        return consumer

    def _take(self, consumer: ShmConsumer, handed_over: bool) -> None:
        """Reads ``consumer``'s ring from now on (at construction, or the successor of
        a ring handed over: its backlog is the stream's continuation, read in full)."""
        ring = consumer.ring
        self._consumer = consumer
        self._ring = ring
        self._buf = ring.buffer
        self._tokens = ring._tokens  # the pool of tracked views over self._buf
        self._stuck_head = None
        # A live ring: skip the backlog's frames (records ending at or before
        # _backlog_end), then delta units until a key frame.
        self._skip_backlog = consumer.live and not handed_over
        self._backlog_end = consumer.attach_head
        self._need_key = consumer.live and not handed_over
        self._ring_skips_seen = consumer.skipped
        # A reader joining a ring several receivers read: its CAPS record may be
        # behind our start.
        self._caps_from_header(ring.tail)

    def _follow(self, timeout: Optional[float]) -> bool:
        """The ring was handed over and everything in it read: goes on in the ring now
        under the name, waiting up to ``timeout`` s for it (None = no limit); False
        when none could be opened in time (the next read_frame tries again). Frames
        of the old ring still referenced keep its mapping (unmapped with the last of
        them). Consumer thread; blocks while the name holds no usable ring."""
        old = self._consumer
        try:
            consumer = self._open(old.name, timeout)
        except RingNotFoundError:
            if timeout is None:
                raise
            return False
        except RingInterruptedError:
            if old.closed:  # close() from another thread woke the wait (see close)
                raise old._closed_while_waiting() from None
            raise
        if old.closed:  # close() from another thread while we waited for the ring
            consumer.close()
            raise old._closed_while_waiting()
        self._release_ready()  # what nothing references any more, to the old ring
        self._entries.clear()  # the rest: their views keep the old mapping alive
        self._take(consumer, True)
        old.close()  # lets the old producer go once its receivers left
        return True

    @property
    def ring_skips(self) -> int:
        """Live mode: how many records this reader lost because it fell behind (the
        producer reused them before it read them); delta units it then dropped until
        a key frame count in :attr:`skipped`."""
        return self._consumer.skipped

    @property
    def slot(self) -> int:
        """The receiver slot this reader claimed."""
        return self._consumer.slot

    @property
    def caps(self) -> Optional[str]:
        """The most recent caps string read from the ring (None before the first)."""
        return self._caps

    @property
    def name(self) -> str:
        return self._consumer.name

    def _set_caps(self, caps: str) -> None:
        self._caps = caps
        if caps not in self._layouts:
            layout = layout_from_caps(caps)
            self._layouts[caps] = layout
            if layout is None and parse_caps(caps)[0] == "video/x-raw":
                warnings.warn(
                    f"ring {self.name!r}: cannot shape frames for caps {caps!r} (format "
                    "not supported, or width/height/format missing); Frame.array is the "
                    "raw bytes (1-D)", RuntimeWarning, stacklevel=3)
        self._layout = self._layouts[caps]

    def _caps_from_header(self, end: int) -> None:
        """The producer's current caps from the header when their CAPS record starts
        before ``end`` (our start at attach, or the end of the record a ring skip
        resumed at: a CAPS record we will never read); a CAPS record still ahead
        replaces them when it is read."""
        info = self._consumer.stream_info()
        if info is None or (info[1] - end) & 0xFFFFFFFF < 0x80000000:  # index >= end
            return
        caps = info[0].decode("utf-8", "replace")
        if caps != self._caps:
            self._set_caps(caps)

    def _stale(self, end: int, flags: int) -> bool:
        """A live ring's frame from the backlog, or a delta unit before the first key
        frame: not to be returned."""
        if self._skip_backlog:
            if (self._backlog_end - end) & 0xFFFFFFFF < 0x80000000:  # end <= backlog_end
                return True
            self._skip_backlog = False
        if flags & _DELTA_UNIT:
            return True
        self._need_key = False
        return False

    def _release_ready(self) -> None:
        """Gives back, in ring order, every leading record nothing references any more."""
        end = self._ready_end()
        if end >= 0:
            self._ring.release_to(end)

    def _ready_end(self) -> int:
        """Drops the leading entries nothing references any more; returns the ring index
        to release up to (-1: none). The caller releases it (release_to, or the next
        acquire_wait)."""
        entries = self._entries
        last_end = None
        while entries:
            end, held, frame = entries[0]
            if frame is not None:
                # A Frame the caller still references pins its record, as a referenced
                # array does (references here: the entry, `frame`, getrefcount's own).
                if _getrefcount(frame) > 3:
                    break
                frame._array = None  # Frame._drop, inlined
                frame._planes = None
            if held is not None and not held.try_release():
                break
            entries.popleft()
            last_end = end
        return -1 if last_end is None else int(last_end)

    def _between_sleeps(self, liveness: bool) -> None:
        """What a blocked read_frame does when a look is due (``liveness``: look at the
        producer too; the looks come once per liveness slice, and at 1 ms doubling
        after the owner word was marked OWNER_DIED) and before it gives up at its
        timeout: gives back what is no longer referenced, looks at the producer, then
        checks for the hoarding deadlock."""
        ring = self._ring
        entries = self._entries
        # Before the look below, which sets the consumer's _last_check: the next look
        # due a slice after that one finds a whole slice passed since now.
        now = time.monotonic()
        if entries:
            self._release_ready()
        if liveness:
            # Raises ProducerDeadError / ProducerReplacedError when the producer is gone
            # and nothing is left to read: a dead producer is not a hoarding reader.
            self._consumer._check_producer(ring, force=True)
        # Deadlock check: nothing left to read, frames still referenced, and the
        # producer has been asleep waiting for space (head unchanged) for a whole
        # liveness slice (_HOARDING_S), however often the looks came: only the space
        # those frames hold can wake it.
        if entries and ring.producer_flags & PRODUCER_WAITING:
            head = ring.head
            if self._stuck_head != head:
                self._stuck_head = head
                self._stuck_since = now
            elif now - self._stuck_since >= _HOARDING_S:
                raise ViewInUseError(
                    f"{len(entries)} frame(s) of ring {self.name!r} are still "
                    "referenced and the producer is waiting for the space they hold; copy "
                    "what you keep (frame.array.copy()) and drop the rest")
        else:
            self._stuck_head = None

    def read_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame, waiting up to ``timeout`` s (None = no limit, 0 = not at all).

        None at end of stream (then ``at_end`` is True) or when the timeout expired.
        Raises RingInterruptedError after :meth:`interrupt`, StreamClosedError when
        :meth:`close` was called (also from another thread while this call waited).
        Follows a hand-over within the call (the wait for the new ring counts against
        ``timeout``). Consumer thread; blocks.
        """
        # This runs once per frame, on cold caches after each sleep: what it costs is
        # mostly the number of Python frames and lines it runs (the blocking path's
        # calls are counted in test_consume_path.py), so the lookup loop is written out
        # here rather than in helpers.
        consumer = self._consumer
        deadline = None if timeout is None else time.monotonic() + timeout
        ring = consumer._enter()  # channel._Call, inlined; StreamClosedError after close()
        try:
            try:
                if self._done:
                    return None
                if self._eos_next:
                    self._done = True
                    self._release_ready()
                    return None
                entries = self._entries
                # What the caller no longer references is released by the first look.
                release = self._ready_end() if entries else -1
                buf = self._buf
                latest = self._latest
                # The BUFFER record to return: (entry, body offset, body length, header
                # fields, caps, layout, extensions); latest=True keeps the newest.
                chosen: Optional[Tuple[_Entry, int, int, Tuple[int, ...], Optional[str],
                                       Optional[VideoLayout], Extensions]] = None
                limit = -1
                while True:
                    # One lookup per wake-up: look, sleep while there is nothing
                    # (WAITING stays set until this call returns), look again; one
                    # native call when it is built. latest=True with a frame chosen:
                    # only what is there now (deadline 0).
                    record = ring.acquire_wait(deadline if chosen is None else 0.0,
                                               consumer._check_at(), release)
                    release = -1
                    if record.__class__ is not tuple:
                        if chosen is not None:
                            break
                        if ring._eos:  # what at_end says right after an empty look
                            if consumer.handed_over():
                                raise _HandedOver  # followed below, out of this call
                            self._done = True
                            self._release_ready()
                            raise StreamTruncatedError(
                                f"ring {self.name!r} was closed without an end-of-stream "
                                "record: the producer stopped early and the stream is cut "
                                "short")
                        if record == WAIT_CHECK:  # a liveness slice passed, nothing read
                            self._between_sleeps(True)
                            continue
                        self._between_sleeps(False)  # the timeout expired
                        return None
                    start, length, end = record
                    entry: _Entry = [end, None, None]  # released in ring order
                    entries.append(entry)
                    # The message header in one unpack; decode_header raises the
                    # FramingError for anything that does not check out.
                    if length < MIN_HEADER_SIZE:
                        decode_header(buf, start, length)
                    fields = unpack_header(buf, start)
                    header_size = fields[1]
                    body = ((header_size + 11) & ~7) - 4  # framing.body_offset
                    if header_size < MIN_HEADER_SIZE or body > length:
                        decode_header(buf, start, length)
                    kind = fields[0]
                    if kind == KIND_BUFFER:
                        if ring._live and ring.skipped != self._ring_skips_seen:
                            # Fell behind (live mode): the ring resumed at the newest
                            # key frame still in it, or else delta units go until the
                            # next key frame.
                            self._ring_skips_seen = ring.skipped
                            self._need_key = True
                            self._caps_from_header(end)
                        if self._need_key and self._stale(end, fields[2]):
                            self.skipped += 1
                            continue
                        layout = self._layout
                        ext = NO_EXTENSIONS
                        if header_size > MESSAGE_HEADER_SIZE:
                            # Header extensions: negative DTS, metas; a video meta's
                            # strides and plane offsets shape the frame (FramingError
                            # when malformed).
                            ext = parse_extensions(buf[start + MESSAGE_HEADER_SIZE:
                                                       start + header_size])
                            if ext.video_meta is not None and layout is not None:
                                layout = _meta_layout(layout, ext.video_meta)
                        if chosen is not None:
                            self.skipped += 1
                        chosen = (entry, start + body, length - body, fields, self._caps,
                                  layout, ext)
                        if not latest:  # the common case: this record is the frame
                            break
                        if limit < 0:
                            limit = ring.head
                    elif kind == KIND_CAPS:
                        self._set_caps(bytes(buf[start + body:start + length]).decode(
                            "utf-8", "replace"))
                    elif kind == KIND_EOS:
                        if chosen is None:
                            self._done = True
                            self._release_ready()
                            return None
                        self._eos_next = True
                        break
                    # unknown kinds are skipped
                    if chosen is not None:
                        ahead = (limit - end) & INDEX_MASK
                        if ahead == 0 or ahead > ring.capacity:
                            break  # looked at everything there was when we started
                entry, body, body_len, fields, caps, layout, ext = chosen
                # The lookup checked the record against the data area and the header
                # check above the body against the record: the pool's view directly
                # (ring.view_of without its bounds check).
                held = entry[_HELD] = self._tokens.held(body, body_len, entry[_END], True)
                # The Frame from the raw header fields (Frame.__init__ without the
                # MessageHeader in between; ``layout`` already shaped by a video meta).
                frame = entry[_FRAME] = _new_frame(Frame)
                frame.caps = caps
                frame.layout = layout
                frame.extensions = ext
                (_, _, frame.flags, pts, dts, duration, offset, offset_end,
                 frame.send_time_ns, _) = fields
                frame.pts = None if pts == TIME_NONE else pts
                if dts != TIME_NONE:
                    frame.dts = dts
                elif ext.negative_dts is not None:  # before running time 0 (an extension)
                    frame.dts = -ext.negative_dts
                else:
                    frame.dts = None
                frame.duration = None if duration == TIME_NONE else duration
                frame.offset = None if offset == TIME_NONE else offset
                frame.offset_end = None if offset_end == TIME_NONE else offset_end
                frame.data = held.view  # type: ignore[assignment]
                frame._array = None
                frame._planes = None
                return frame
            finally:
                ring.end_sleep()  # WAITING, left set across the wait's steps
        except RingInterruptedError:
            if consumer._closing:
                raise consumer._closed_while_waiting() from None
            raise
        except _HandedOver:
            pass
        finally:
            consumer._leave()
        # The ring was handed over and read to its end: on into the ring now under the
        # name, within what is left of ``timeout``.
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._follow(left):
            return None  # no ring under the name in time: the next call tries again
        return self.read_frame(None if deadline is None else
                               max(0.0, deadline - time.monotonic()))

    @property
    def at_end(self) -> bool:
        """True once EOS was read (or the producer closed and everything was read)."""
        return self._done

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        frame = self.read_frame(None)
        if frame is None:
            raise StopIteration
        return frame

    async def aread_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """:meth:`read_frame` for asyncio: runs it in the loop's default executor.
        Cancelling the awaiting task (``task.cancel()``, ``asyncio.wait_for``) really
        stops the wait: the blocked call is interrupted and the thread freed. One
        awaiting task at a time; event-loop thread."""
        return await run_interruptibly(self, self.read_frame, timeout)

    def __aiter__(self) -> "FrameReader":
        """``async for frame in reader``: frames until EOS, as :meth:`aread_frame`."""
        return self

    async def __anext__(self) -> Frame:
        frame = await self.aread_frame(None)
        if frame is None:
            raise StopAsyncIteration
        return frame

    def interrupt(self) -> None:
        """Makes a blocked :meth:`read_frame` (or iteration) in another thread raise
        RingInterruptedError; sticky until :meth:`clear_interrupt` (also across a
        hand-over, and while the reader waits for the ring it follows). Any thread;
        returns as soon as the sleeper is awake."""
        self._interrupter.interrupt()

    def clear_interrupt(self) -> None:
        """Re-arms blocking calls after :meth:`interrupt`. Any thread; never blocks."""
        self._interrupter.clear()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._consumer.closed

    def close(self) -> None:
        """Releases what can be released and detaches. Never unlinks. Idempotent. Any
        thread: a read_frame blocked in another thread is woken and raises
        StreamClosedError first."""
        consumer = self._consumer
        if consumer.closed:
            return
        if not consumer._active:
            self._release_ready()
            self._entries.clear()
        consumer.close()
        # A read_frame between two rings (waiting for the one it follows) is in no call
        # of the consumer: the interrupter wakes it, and it raises StreamClosedError.
        self._interrupter.interrupt()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameWriter:
    """Writes a profile-1 ring the way shmringsink does: CAPS, BUFFERs, EOS. Producer side.

    ``FrameWriter(name, capacity, caps=...)`` creates the ring (see ShmProducer).
    :meth:`write` sends CAPS first whenever ``caps`` changed, then the buffer with
    its timestamps, zero-copy through a reservation. :meth:`close` sends EOS and
    ends the stream.
    """

    def __init__(self, name: str, capacity: int = 64 << 20, caps: Optional[str] = None,
                 mode: int = 0o600) -> None:
        self._producer = ShmProducer(name, capacity, profile=PROFILE_GST_FRAMING, mode=mode)
        self._caps: Optional[str] = None
        self._pending_caps = caps
        self._layouts: Dict[str, Optional[VideoLayout]] = {}
        self._discont_next = False  # a buffer was dropped: mark the next one written

    @property
    def producer(self) -> ShmProducer:
        """The underlying ShmProducer (profile 1)."""
        return self._producer

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._producer.closed

    @property
    def dropped(self) -> int:
        """Buffers (and CAPS messages) dropped because there was no room in time."""
        return self._producer.dropped

    def interrupt(self) -> None:
        """Makes a :meth:`write` blocked for room in another thread (or in the thread a
        signal handler runs in) raise RingInterruptedError; sticky until
        :meth:`clear_interrupt`. Any thread; returns as soon as the sleeper is awake."""
        self._producer.interrupt()

    def clear_interrupt(self) -> None:
        """Re-arms blocking calls after :meth:`interrupt`. Any thread; never blocks."""
        self._producer.clear_interrupt()

    def set_caps(self, caps: str) -> None:
        """Caps for the following buffers (sent before the next one if they changed).
        Producer thread; never blocks."""
        self._pending_caps = caps

    def _send(self, payload: bytes, timeout: Optional[float]) -> bool:
        def fill(view: memoryview) -> None:
            view[:] = payload
        return self._put(len(payload), fill, timeout)

    def _put(self, n: int, fill: Callable[[memoryview], None],
             timeout: Optional[float], sync: bool = False) -> bool:
        """Reserves ``n`` bytes, fills and commits them; False when there was no room.

        As shmringsink: waits for room (in liveness slices, up to ``timeout``) while a
        consumer is attached or none has attached yet; once consumers came and went
        and none is attached, nobody will make room, so a full ring drops at once
        instead of wedging the writer."""
        producer = self._producer
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            ring = producer.ring
            first_pending = ring.consumer_flags >> CONSUMER_ATTACH_COUNT_SHIFT == 0
            block = first_pending or producer.consumer_attached()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not block:
                wait = 0.0
            else:
                wait = LIVENESS_SLICE_S if remaining is None else min(remaining,
                                                                      LIVENESS_SLICE_S)
            try:
                with producer.reserve(n, timeout=wait, sync=sync) as view:
                    fill(view)
                return True
            except RingTimeoutError:
                if not block or wait == 0.0 or (remaining is not None and remaining <= wait):
                    return False

    def write(self, data: Any, pts: Optional[int] = None, dts: Optional[int] = None,
              duration: Optional[int] = None, offset: Optional[int] = None,
              offset_end: Optional[int] = None, flags: int = 0,
              timeout: Optional[float] = None) -> bool:
        """Writes one buffer (bytes-like, C-contiguous), waiting up to ``timeout`` s
        for space (None = no limit, 0 = drop at once when full).

        Like shmringsink, a writer whose consumer left (and none is attached) drops
        at once when the ring is full instead of waiting for room nobody will make.
        With video caps the size must match them: a tight frame of a packed or gray
        format (rows not padded, e.g. a 1366x768 BGR numpy array) is padded to
        GStreamer's 4-byte row stride here (one copy); any other size raises
        ValueError naming both sizes. Returns False, counting the drop in the
        header's ``dropped``, when there was no room in time; the next buffer
        written then carries DISCONT (as shmringsink marks the buffer after a gap).
        Producer thread; blocks.
        """
        if self._pending_caps is not None and self._pending_caps != self._caps:
            index = self._producer.ring.head  # at or before the CAPS record's start
            if not self._send(encode_caps(self._pending_caps, monotonic_ns()), timeout):
                self._producer.count_dropped()
                self._discont_next = True
                return False
            self._caps = self._pending_caps
            # Also in the header: a reader that joins, or falls behind, after this
            # record was reused gets these caps (as shmringsink does).
            info = self._caps.encode("utf-8")
            if len(info) <= INFO_MAX:
                self._producer.set_stream_info(info, index)
        body = self._conform(memoryview(data).cast("B"))
        if self._discont_next:
            flags |= _DISCONT
        # A negative dts adds an extension: the body starts after the whole header.
        header = encode_header(KIND_BUFFER, flags=flags, pts=pts, dts=dts, duration=duration,
                               offset=offset, offset_end=offset_end,
                               send_time_ns=monotonic_ns())
        at = len(header)
        n = at + body.nbytes
        def fill(view: memoryview) -> None:
            view[:at] = header
            view[at:] = body
        # A buffer a decoder can start at (no DELTA_UNIT) is a sync point: where a
        # live reader that fell behind resumes.
        if not self._put(n, fill, timeout, not flags & _DELTA_UNIT):
            self._producer.count_dropped()
            self._discont_next = True
            return False
        self._discont_next = False
        return True

    def _conform(self, body: memoryview) -> memoryview:
        """``body`` checked against the current caps (padded when it is a tight frame of
        a packed or gray format)."""
        caps = self._caps
        if caps is None:
            return body
        if caps not in self._layouts:
            self._layouts[caps] = layout_from_caps(caps)
        layout = self._layouts[caps]
        if layout is None or body.nbytes == layout.size:
            return body
        if layout.packed:
            plane = layout.planes[0]
            row = plane.shape[1] * (plane.shape[2] if len(plane.shape) == 3 else 1) * \
                int(plane.dtype[-1])
            if body.nbytes == row * layout.height:
                padded = bytearray(layout.size)
                for r in range(layout.height):
                    padded[r * plane.stride:r * plane.stride + row] = \
                        body[r * row:(r + 1) * row]
                return memoryview(padded)
            hint = (f"a tight frame ({row * layout.height} bytes) is padded here; rows of "
                    f"{plane.stride} bytes are what GStreamer expects")
        else:
            hint = ("planar formats are not padded here: lay the planes out with "
                    "GStreamer's strides (see shmring.caps.video_layout)")
        raise ValueError(f"frame of {body.nbytes} bytes does not match caps {layout.format} "
                         f"{layout.width}x{layout.height}, which need {layout.size} bytes; "
                         f"{hint}")

    def close(self, timeout: Optional[float] = 1.0) -> None:
        """Sends EOS (waiting up to ``timeout`` s for room) and closes the ring (end of
        stream, name removed). Idempotent. After ``producer.end_stream()`` (the stream
        already ended, CLOSED without an EOS message) it only closes, as C++
        ``ShmProducer`` does after ``Close()``. To hand the stream over to a new ring
        under the same name (readers follow it), in this order:
        ``old.producer.release_name()``, create the new ``FrameWriter`` with the same
        name, ``old.producer.end_stream()``, then ``old.close()`` once its readers had
        time to drain it. ``release_name()`` alone and then ``close()`` would write EOS
        into the old ring: its readers would end there instead of following. Producer
        thread, or any thread while a write is blocked (that write raises
        StreamClosedError; the stream then ends with CLOSED but without an EOS
        message). Blocks up to ``timeout``."""
        producer = self._producer
        if producer.closed:
            return
        if producer._active:  # a write blocked in another thread: it owns the ring now
            producer.close()  # wakes it (StreamClosedError), then ends the stream
            return
        if producer.stream_ended:  # end_stream(): nothing may follow CLOSED, EOS neither
            producer.close()
            return
        try:
            self._send(encode_eos(monotonic_ns()), timeout)
        finally:
            producer.close()

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
