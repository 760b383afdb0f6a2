"""A Parquet file's page headers, read before Arrow decodes a page of it.

Arrow allocates what each page header declares (its uncompressed size) and decompresses into it,
whatever the footer says of the column: a 200 KB file whose footer declares 200 KB, and whose one
page declares 700 MB (a zstd stream of run-length blocks), took 770 MB resident before Arrow found
the page malformed. So before a row group is read, every page header of its column chunks is read
here, where Arrow will read them (from the dictionary or first data page, for the chunk's compressed
length): the pages of a column may declare no more than about its footer entry, nor a row group's
pages more than is read at a time (``check_pages``).

The headers are Thrift compact-protocol structs; only the two sizes are read, the rest skipped, a
bounded number of values per header (``MAX_HEADER_VALUES``) and bytes (``MAX_HEADER_BYTES``, Arrow's
own default bound).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import BinaryIO

MAX_HEADER_BYTES = 16 << 20  # Arrow's default bound on a page header's size
MAX_HEADER_VALUES = 10_000  # Thrift values per page header: a real one holds a few dozen
# Pages of a file: each is a step of this check (a few microseconds); files of Arrow's 1 MiB pages
# hold one per megabyte, so 200,000 is a file of hundreds of gigabytes
MAX_PAGES = 200_000
_FIRST_READ = 4096  # bytes read for a header at first; more only when it is longer
_UNCOMPRESSED_SIZE, _COMPRESSED_SIZE = 2, 3  # PageHeader's field ids
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)


class PageHeaderError(ValueError):
    """A page header that cannot be read, or declares more than its column may hold."""


class PagesTooLarge(PageHeaderError):
    """Pages that agree with their footer, but more of them than is read at a time: a file to
    rewrite with smaller row groups, not a damaged one."""


def check_pages(handle: BinaryIO, metadata, most_per_row_group: int, most_at_once: int | None = None,
                dictionaries: Collection[str] = ()) -> None:
    """Raise PageHeaderError where a column chunk's pages (``handle`` holds the file, ``metadata``
    is its ``pyarrow.parquet.FileMetaData``) declare more bytes once decompressed than twice what
    the footer declares for the chunk, plus a MiB (writers count the headers in, or not; a bomb
    declares hundreds of times more), where a row group's pages declare more than
    ``most_per_row_group`` together, where the largest page of each of a row group's columns, as
    Arrow holds it (read, decompressed, decoded: compressed + 2 x uncompressed, twice more for the
    ``dictionaries``' columns, read as dictionaries), comes to more than ``most_at_once`` together,
    where the file holds more than
    ``MAX_PAGES`` pages, or where a page header cannot be read."""
    pages = 0
    for group in range(metadata.num_row_groups):
        # Arrow holds a column's current page as read and decompressed while it decodes it into as
        # much again, every column's at once (a 250 MB string: 750 MiB; read as a dictionary, 1,250).
        # A page is not 1 MiB: Arrow's writer checks the size after each 1,024 values, so a row
        # group of 100 embedded images (Hugging Face's) is one page; 100 of 8 MiB held 1.6 GB.
        row_group, group_bytes, at_once = metadata.row_group(group), 0, 0
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            where = f"row group {group}, column {column.path_in_schema}"
            # the first page: the dictionary's, or the first data page's (an offset of 0 is unset:
            # the file's magic number is there; a row group of no rows has no data page)
            offsets = [offset for offset in (column.data_page_offset,
                                             column.dictionary_page_offset if column.has_dictionary_page else 0)
                       if offset and offset > 0]
            if not offsets:
                if column.total_compressed_size:
                    raise PageHeaderError(f"{where}: {column.total_compressed_size} bytes of pages and no page offset")
                continue
            start, declared, largest = min(offsets), 0, 0
            copies = 4 if column.path_in_schema in dictionaries else 2
            for uncompressed, compressed in _page_sizes(handle, start, start + column.total_compressed_size, where):
                pages += 1
                if pages > MAX_PAGES:
                    raise PageHeaderError(f"{where}: the file holds more than {MAX_PAGES} pages")
                declared += uncompressed
                largest = max(largest, compressed + copies * uncompressed)
            if declared > 2 * column.total_uncompressed_size + (1 << 20):
                raise PageHeaderError(f"{where}: its pages declare {declared} bytes once decompressed, its footer "
                                      f"{column.total_uncompressed_size}")
            at_once += largest
            if most_at_once is not None and at_once > most_at_once:
                raise PagesTooLarge(f"row group {group}: its columns' largest pages take {at_once} bytes read, "
                                    f"decompressed and decoded, over the {most_at_once} held at a time (at column "
                                    f"{column.path_in_schema})")
            group_bytes += declared
            if group_bytes > most_per_row_group:
                raise PagesTooLarge(f"row group {group}: its pages declare more than {most_per_row_group} bytes "
                                    "once decompressed, over what is read at a time")


def _page_sizes(handle: BinaryIO, position: int, end: int, where: str) -> Iterator[tuple[int, int]]:
    """(uncompressed, compressed) size each page header between ``position`` and ``end`` declares,
    in turn."""
    while position < end:
        length, uncompressed, compressed = _page_header(handle, position, min(end - position, MAX_HEADER_BYTES),
                                                        where)
        if uncompressed < 0 or compressed < 0:
            raise PageHeaderError(f"{where}: the page at byte {position} declares a negative size")
        yield uncompressed, compressed
        position += length + compressed


def _page_header(handle: BinaryIO, position: int, most: int, where: str) -> tuple[int, int, int]:
    """(header length, uncompressed size, compressed size) of the page header at ``position``, read
    in at most ``most`` bytes."""
    size = min(_FIRST_READ, most)
    while True:
        handle.seek(position)
        data = handle.read(size)
        try:
            return _sizes(_Compact(data))
        except IndexError:  # the header runs past what was read
            if size >= most or len(data) < size:
                raise PageHeaderError(f"{where}: the page header at byte {position} runs past "
                                      f"{min(size, len(data))} bytes") from None
            size = min(size * 16, most)
        except ValueError as error:
            raise PageHeaderError(f"{where}: the page header at byte {position} is not readable ({error})") from None


def _sizes(reader: _Compact) -> tuple[int, int, int]:
    sizes = {_UNCOMPRESSED_SIZE: None, _COMPRESSED_SIZE: None}
    for field, kind in reader.fields():
        if field in sizes and kind == _I32:
            sizes[field] = reader.signed()
        else:
            reader.skip(kind)
    if None in sizes.values():
        raise ValueError("no page sizes")
    return reader.position, sizes[_UNCOMPRESSED_SIZE], sizes[_COMPRESSED_SIZE]


class _Compact:
    """A reader of Thrift's compact protocol over ``data``; IndexError when it runs past the end."""

    def __init__(self, data: bytes):
        self.data, self.position, self.values = data, 0, 0

    def byte(self) -> int:
        value = self.data[self.position]
        self.position += 1
        return value

    def varint(self) -> int:
        self._count()
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("a number of more than 64 bits")

    def signed(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def fields(self):
        """(field id, type) of each field of the struct that starts here, up to its stop."""
        last = 0
        while True:
            header = self.byte()
            if header == _STOP:
                return
            last = last + (header >> 4) if header >> 4 else self.signed()
            yield last, header & 0x0F

    def skip(self, kind: int, depth: int = 0) -> None:
        self._count()
        if depth > 32:
            raise ValueError("structures nested more than 32 deep")
        if kind in (_TRUE, _FALSE):
            return  # a field's boolean is its type
        if kind == _BYTE:
            self.position += 1
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.position += 8
        elif kind == _BINARY:
            length = self.varint()  # read first: ``position += varint()`` would add to the old position
            self.position += length
        elif kind in (_LIST, _SET):
            header = self.byte()
            count = header >> 4 if header >> 4 != 15 else self.varint()
            for _ in range(count):
                self._element(header & 0x0F, depth)
        elif kind == _MAP:
            count = self.varint()
            types = self.byte() if count else 0
            for _ in range(count):
                self._element(types >> 4, depth)
                self._element(types & 0x0F, depth)
        elif kind == _STRUCT:
            for _, field_kind in self.fields():
                self.skip(field_kind, depth + 1)
        else:
            raise ValueError(f"unknown type {kind}")
        if self.position > len(self.data):
            raise IndexError("past the end")

    def _element(self, kind: int, depth: int) -> None:
        if kind in (_TRUE, _FALSE):  # in a collection, a boolean takes a byte
            self._count()
            self.position += 1
        else:
            self.skip(kind, depth + 1)

    def _count(self) -> None:
        self.values += 1
        if self.values > MAX_HEADER_VALUES:
            raise ValueError(f"more than {MAX_HEADER_VALUES} values")
