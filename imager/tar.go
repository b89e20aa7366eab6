package imager

// The tar format: the bytes of `git archive --format=tar <commit>` up to the
// end of the archive (the two zero end blocks), then zeros to a multiple of
// SectorAlign.
//
// Reproduced from git's archive-tar.c (checked byte for byte against git
// 2.39 in tar_test.go):
//   - a pax global header ("pax_global_header", typeflag 'g') holding
//     "comment=<commit id>" when the tree has a commit id, and an "mtime"
//     record when the commit time does not fit 11 octal digits (every entry
//     then carries the clamped time, as git does);
//   - ustar headers with magic "ustar\0", version "00", uid/gid 0, uname and
//     gname "root", devmajor/devminor 0, mtime = commit time, modes after
//     git's default tar.umask 002: files 0664, executables 0775, directories
//     and submodules 0775, symlinks 0777; directories and submodules (git
//     writes gitlinks as empty directories) with a trailing "/" and size 0;
//   - entries in tree order; paths over 100 bytes split into the 155-byte
//     prefix and the name where git splits them, else a pax "path" record and
//     the name "<object id>.data"; symlink targets over 100 bytes in a pax
//     "linkpath" record with the link name "see <object id>.paxheader";
//     files over 8 GiB - 1 with a pax "size" record and size 0 in the header
//     (as git's source does; not run against git in the tests, which would
//     need an 8 GiB blob). A pax extended header is named "<object id>.paxheader"; for a directory
//     the object id is its tree id, so Entry.Blob of directories must hold it;
//   - contents padded to 512 bytes, then two zero blocks.
//
// Not reproduced:
//   - git's padding of the archive to a 10240-byte record: the image ends
//     with zeros up to the next 4 KiB boundary instead (MirageOS's blkfront
//     cannot read a partial 4 KiB sector). Both are zeros after the end
//     blocks: only their lengths differ;
//   - the export-subst attribute: files are served as stored in git, the
//     $Format:...$ placeholders are not expanded, so such a file differs from
//     git archive's (content and size; TestTarExportSubstNotExpanded). Likewise any conversion git archive
//     applies from .gitattributes (eol/text, ident, filter drivers): blobs are
//     served raw, as with no attributes;
//   - tar.umask and other git configuration: the default umask 002 is used;
//   - --prefix, --add-file, compression and SHA-256 repositories (object
//     ids here are 20 bytes).
//
// export-ignore is honored before the imager, when gitfs lists the tree.
//
// MirageOS's tar reader asserts that an extended header's data is at most
// 512 bytes: such entries (paths over about 500 bytes that cannot be split,
// symlink targets over about 500 bytes) are kept, so the image stays identical to git's, and
// reported as Warnings naming the path.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tar block and header geometry (POSIX ustar).
const (
	tarBlockSize = 512
	tarEndBlocks = 2 * tarBlockSize // the end-of-archive marker

	// Header fields: offset and length.
	tarNameOff, tarNameLen         = 0, 100
	tarModeOff, tarModeLen         = 100, 8
	tarUIDOff, tarUIDLen           = 108, 8
	tarGIDOff, tarGIDLen           = 116, 8
	tarSizeOff, tarSizeLen         = 124, 12
	tarMtimeOff, tarMtimeLen       = 136, 12
	tarChksumOff, tarChksumLen     = 148, 8
	tarTypeflagOff                 = 156
	tarLinknameOff, tarLinknameLen = 157, 100
	tarMagicOff                    = 257 // "ustar\0" then version "00"
	tarUnameOff, tarUnameLen       = 265, 32
	tarGnameOff, tarGnameLen       = 297, 32
	tarDevmajorOff, tarDevmajorLen = 329, 8
	tarDevminorOff, tarDevminorLen = 337, 8
	tarPrefixOff, tarPrefixLen     = 345, 155

	// tarMaxOctal11 is the largest number 11 octal digits hold: git's
	// USTAR_MAX_SIZE and USTAR_MAX_MTIME (8 GiB - 1 bytes; year 6053).
	tarMaxOctal11 = 0o77777777777

	// tarUmask is git's default tar.umask.
	tarUmask = 0o002

	// mirageMaxExtHeader is the largest pax extended header payload that
	// MirageOS's tar reader accepts: ocaml-tar's lib/tar.ml asserts that an
	// extended header's data is at most 512 bytes.
	mirageMaxExtHeader = 512
)

// Tar type flags used by git.
const (
	tarTypeReg    = '0'
	tarTypeSymlnk = '2'
	tarTypeDir    = '5'
	tarTypePax    = 'x' // pax extended header for the next entry
	tarTypeGlobal = 'g' // pax global header
)

// tarMagic is the ustar magic and version git writes.
var tarMagic = []byte("ustar\x0000")

// tarBlockPadding is the number of zeros that pad n bytes to a block.
func tarBlockPadding(n int64) int64 {
	return -n & (tarBlockSize - 1)
}

// tarHeader holds the fields of one ustar header as git fills them.
type tarHeader struct {
	name, prefix, linkname string
	typeflag               byte
	mode                   int64 // permission bits only
	size                   int64
	mtime                  int64
}

// marshal writes the header into b (tarBlockSize zeroed bytes), as git's
// prepare_header does: octal numbers zero-padded with a NUL terminator.
func (h *tarHeader) marshal(b []byte) {
	copy(b[tarNameOff:tarNameOff+tarNameLen], h.name)
	octal(b[tarModeOff:tarModeOff+tarModeLen], h.mode)
	octal(b[tarUIDOff:tarUIDOff+tarUIDLen], 0)
	octal(b[tarGIDOff:tarGIDOff+tarGIDLen], 0)
	octal(b[tarSizeOff:tarSizeOff+tarSizeLen], h.size)
	octal(b[tarMtimeOff:tarMtimeOff+tarMtimeLen], h.mtime)
	b[tarTypeflagOff] = h.typeflag
	copy(b[tarLinknameOff:tarLinknameOff+tarLinknameLen], h.linkname)
	copy(b[tarMagicOff:], tarMagic)
	copy(b[tarUnameOff:tarUnameOff+tarUnameLen-1], "root")
	copy(b[tarGnameOff:tarGnameOff+tarGnameLen-1], "root")
	octal(b[tarDevmajorOff:tarDevmajorOff+tarDevmajorLen], 0)
	octal(b[tarDevminorOff:tarDevminorOff+tarDevminorLen], 0)
	copy(b[tarPrefixOff:tarPrefixOff+tarPrefixLen], h.prefix)
	// The checksum counts its own field as spaces.
	copy(b[tarChksumOff:tarChksumOff+tarChksumLen], "        ")
	sum := int64(0)
	for _, c := range b[:tarBlockSize] {
		sum += int64(c)
	}
	octal(b[tarChksumOff:tarChksumOff+tarChksumLen], sum)
}

// tarTemplate is a ustar header with the fields every entry of an image
// shares (uid, gid, mtime, magic, uname, gname, device numbers, the
// checksum field as spaces) and the sum of its bytes: a header is made by
// filling in the other fields and adding their bytes to the sum, instead
// of summing 512 bytes each time.
type tarTemplate struct {
	b     [tarBlockSize]byte
	sum   int64
	mtime int64
}

func newTarTemplate(mtime int64) *tarTemplate {
	t := &tarTemplate{mtime: mtime}
	h := tarHeader{mtime: mtime}
	h.marshal(t.b[:])
	clear(t.b[tarModeOff : tarModeOff+tarModeLen])
	clear(t.b[tarSizeOff : tarSizeOff+tarSizeLen])
	t.b[tarTypeflagOff] = 0
	copy(t.b[tarChksumOff:tarChksumOff+tarChksumLen], "        ")
	for _, c := range t.b {
		t.sum += int64(c)
	}
	return t
}

// marshalFrom writes the header into b as marshal does, starting from t
// (whose mtime must be h's).
func (h *tarHeader) marshalFrom(b []byte, t *tarTemplate) {
	copy(b, t.b[:])
	sum := t.sum
	add := func(f []byte) {
		for _, c := range f {
			sum += int64(c)
		}
	}
	n := copy(b[tarNameOff:tarNameOff+tarNameLen], h.name)
	add(b[tarNameOff : tarNameOff+n])
	octal(b[tarModeOff:tarModeOff+tarModeLen], h.mode)
	add(b[tarModeOff : tarModeOff+tarModeLen])
	octal(b[tarSizeOff:tarSizeOff+tarSizeLen], h.size)
	add(b[tarSizeOff : tarSizeOff+tarSizeLen])
	b[tarTypeflagOff] = h.typeflag
	sum += int64(h.typeflag)
	n = copy(b[tarLinknameOff:tarLinknameOff+tarLinknameLen], h.linkname)
	add(b[tarLinknameOff : tarLinknameOff+n])
	n = copy(b[tarPrefixOff:tarPrefixOff+tarPrefixLen], h.prefix)
	add(b[tarPrefixOff : tarPrefixOff+n])
	octal(b[tarChksumOff:tarChksumOff+tarChksumLen], sum)
}

// octal writes v as len(field)-1 zero-padded octal digits and a NUL,
// from the last digit back (a header's fields are written for every
// member read, so not through strconv). Callers keep v in range (sizes
// and times are clamped before).
func octal(field []byte, v int64) {
	digits := len(field) - 1
	field[digits] = 0
	u := uint64(v)
	for i := digits - 1; i >= 0; i-- {
		field[i] = '0' + byte(u&7)
		u >>= 3
	}
}

// paxRecord appends the pax record "<len> key=value\n", where len counts the
// whole record including its own digits.
func paxRecord(b []byte, key, value string) []byte {
	n := len(key) + len(value) + 3 // ' ', '=', '\n'
	size := n + len(strconv.Itoa(n))
	if len(strconv.Itoa(size)) > len(strconv.Itoa(n)) {
		size++
	}
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	b = append(b, value...)
	return append(b, '\n')
}

// tarPathPrefix is the length of the prefix git splits a long path at: the
// last '/' before byte tarPrefixLen (ignoring a trailing '/'), or 0.
func tarPathPrefix(p string) int {
	i := len(p)
	if i > 1 && p[i-1] == '/' {
		i--
	}
	i = min(i, tarPrefixLen)
	for {
		i--
		if i <= 0 || p[i] == '/' {
			return max(i, 0)
		}
	}
}

// BuildTar lays out the tar image of tree: git archive's bytes, then zeros
// to a multiple of SectorAlign (see the comment at the top of tar.go).
// opts.Symlinks: default or keep writes symlinks as git does; follow and
// skip replace or drop them first (FollowSymlinks, SkipSymlinks). The
// warnings name entries represented differently from git or that MirageOS
// cannot read. Blobs are never read while laying out: sizes come from the
// entries. The layout keeps one row per entry (see tarTable), not the
// headers: they are made again on each read.
func BuildTar(tree *Tree, blobs BlobReader, opts Options) (*Layout, []Warning, error) {
	if tree == nil {
		return nil, nil, fmt.Errorf("imager: tar: nil tree")
	}
	var warns []Warning
	switch opts.Symlinks {
	case SymlinksDefault, SymlinksKeep:
	case SymlinksFollow:
		tree, warns = FollowSymlinks(tree)
	case SymlinksSkip:
		tree, warns = SkipSymlinks(tree)
	default:
		return nil, nil, fmt.Errorf("imager: tar: unknown symlink mode %q", opts.Symlinks)
	}

	// git writes the commit time; a time past 11 octal digits goes into
	// the global header and every entry gets the largest that fits.
	mtime := tree.Time.Unix()
	var global []byte
	if tree.CommitID != "" {
		global = paxRecord(global, "comment", tree.CommitID)
	}
	if mtime > tarMaxOctal11 {
		global = paxRecord(global, "mtime", strconv.FormatInt(mtime, 10))
		mtime = tarMaxOctal11
	}
	mtime = max(mtime, 0) // git has no times before 1970

	tab, w, err := newTarTable(tree.Entries, tree.Hints, mtime)
	if err != nil {
		return nil, nil, err
	}
	warns = append(warns, w...)
	var b Builder
	if len(global) > 0 {
		b.Data("tar pax global header", paxBlocks("pax_global_header", tarTypeGlobal, global, mtime))
	}
	b.members(tab, len(tab.ents))
	// A file's padding belongs to the next member, so that the last one
	// is described together with the end blocks.
	pad := tab.padAfter(len(tab.ents) - 1)
	desc := "tar end blocks"
	if pad > 0 {
		desc = "tar padding and end blocks"
	}
	if (b.Pos()+pad+tarEndBlocks)%SectorAlign != 0 {
		desc += ", zeros to 4 KiB"
	}
	b.Zeros(desc, pad+tarEndBlocks)
	if err := b.Err(); err != nil {
		return nil, nil, err
	}
	return b.Layout(blobs), warns, nil
}

// tarTable is a tar image's members: one row per entry (pax header,
// ustar header, content, and the padding of the entry before), with every
// path and symlink target in one string.
type tarTable struct {
	names string // each entry's path, then a symlink's target
	ents  []tarEnt
	mtime int64
	tmpl  *tarTemplate
}

// tarEnt is one entry of a tarTable. The tree's hint for the blob is
// kept in the bytes the alignment of size would leave empty (40 bytes an
// entry either way): a pack number of up to 16 bits and an index
// position of 32, which covers any hint gitfs makes from a pack list of
// fewer than 65,535 packs (others are dropped).
type tarEnt struct {
	blob     BlobID
	name     uint32 // where the path starts in names; it ends where the next entry's starts (minus a symlink's target)
	kind     Kind
	ext      bool // a pax extended header comes first
	hintHigh uint16
	hintLow  uint32
	size     int64
}

// Pieces of a tar member.
const (
	tarPartPad    = iota // zeros padding the previous entry's content
	tarPartPax           // pax extended header
	tarPartHeader        // ustar header
	tarPartBlob          // content
)

var _ memberTable = (*tarTable)(nil)

// newTarTable checks every entry (as its header is made) and keeps what
// makes the headers again: kind, size, blob, path and target.
func newTarTable(ents []Entry, hints []uint64, mtime int64) (*tarTable, []Warning, error) {
	if len(hints) != len(ents) {
		hints = nil
	}
	n := 0
	for i := range ents {
		n += len(ents[i].Path) + len(ents[i].Target)
	}
	if n > math.MaxUint32 {
		return nil, nil, fmt.Errorf("imager: tar: %d bytes of paths and link targets: at most 4 GiB", n)
	}
	var names strings.Builder
	names.Grow(n)
	t := &tarTable{ents: make([]tarEnt, len(ents)), mtime: mtime, tmpl: newTarTemplate(mtime)}
	var warns []Warning
	for i := range ents {
		e := &ents[i]
		it := tarItem{path: e.Path, target: e.Target, kind: e.Kind, size: e.Size, blob: e.Blob}
		_, ext, err := tarEntryPlan(&it, t.tmpl)
		if err != nil {
			return nil, nil, err
		}
		if len(ext) > mirageMaxExtHeader {
			warns = append(warns, Warning{Path: e.Path, Msg: fmt.Sprintf(
				"pax extended header of %d bytes: MirageOS's tar reader accepts at most %d and fails at connect",
				len(ext), mirageMaxExtHeader)})
		}
		t.ents[i] = tarEnt{blob: e.Blob, name: uint32(names.Len()), kind: e.Kind, ext: len(ext) > 0, size: e.Size}
		if hints != nil && hints[i]>>48 == 0 {
			t.ents[i].hintHigh, t.ents[i].hintLow = uint16(hints[i]>>32), uint32(hints[i])
		}
		names.WriteString(e.Path)
		if e.Kind == KindSymlink {
			names.WriteString(e.Target)
		}
	}
	t.names = names.String()
	return t, warns, nil
}

// item returns what entry i's headers are made of.
func (t *tarTable) item(i int) tarItem {
	e := &t.ents[i]
	end := len(t.names)
	if i+1 < len(t.ents) {
		end = int(t.ents[i+1].name)
	}
	it := tarItem{path: t.names[e.name:end], kind: e.kind, size: e.size, blob: e.blob}
	if e.kind == KindSymlink {
		cut := len(it.path) - int(e.size)
		it.path, it.target = it.path[:cut], it.path[cut:]
	}
	return it
}

func (t *tarTable) isFile(i int) bool {
	return t.ents[i].kind == KindFile || t.ents[i].kind == KindExecutable
}

// padAfter is the padding after entry i's content (0 for none, or i < 0).
func (t *tarTable) padAfter(i int) int64 {
	if i < 0 || !t.isFile(i) {
		return 0
	}
	return tarBlockPadding(t.ents[i].size)
}

func (t *tarTable) pieces(i int) (ps pieces) {
	if pad := t.padAfter(i - 1); pad > 0 {
		ps.add(piece{len: pad, kind: ExtentZero, part: tarPartPad})
	}
	if t.ents[i].ext {
		it := t.item(i)
		var hdr [tarBlockSize]byte
		ext, _ := tarEntryHeader(&it, t.tmpl, hdr[:])
		n := int64(len(ext))
		ps.add(piece{len: tarBlockSize + n + tarBlockPadding(n), kind: ExtentData, part: tarPartPax})
	}
	ps.add(piece{len: tarBlockSize, kind: ExtentData, part: tarPartHeader})
	if t.isFile(i) && t.ents[i].size > 0 {
		ps.add(piece{len: t.ents[i].size, kind: ExtentBlob, part: tarPartBlob})
	}
	return ps
}

func (t *tarTable) gen(i int, part uint8, p []byte, rel int64) {
	it := t.item(i)
	var hdr [tarBlockSize]byte
	ext, _ := tarEntryHeader(&it, t.tmpl, hdr[:])
	if part == tarPartPax {
		copy(p, paxBlocks(it.blob.String()+".paxheader", tarTypePax, ext, t.mtime)[rel:])
		return
	}
	copy(p, hdr[rel:])
}

func (t *tarTable) blob(i int) BlobID { return t.ents[i].blob }

func (t *tarTable) hint(i int) uint64 {
	return uint64(t.ents[i].hintHigh)<<32 | uint64(t.ents[i].hintLow)
}

func (t *tarTable) desc(i int, part uint8) string {
	switch part {
	case tarPartPad:
		return "tar padding"
	case tarPartPax:
		return "tar pax header " + t.item(i).path
	case tarPartHeader:
		return "tar header " + t.item(i).path
	}
	return t.item(i).path
}

// tarItem is what one entry's headers are made of.
type tarItem struct {
	path, target string
	kind         Kind
	size         int64
	blob         BlobID
}

// tarEntryHeader fills hdr with e's ustar header as git's write_tar_entry
// does, and returns the pax extended header records git writes before it
// (nil when none).
func tarEntryHeader(e *tarItem, tmpl *tarTemplate, hdr []byte) ([]byte, error) {
	h, ext, err := tarEntryPlan(e, tmpl)
	if err != nil {
		return nil, err
	}
	h.marshalFrom(hdr, tmpl)
	return ext, nil
}

// tarEntryPlan checks entry e and returns its ustar header, not yet
// marshalled, and its pax records (nil when it needs none): laying out
// needs only the records' length, reads the header's bytes.
func tarEntryPlan(e *tarItem, tmpl *tarTemplate) (tarHeader, []byte, error) {
	if e.path == "" || strings.IndexByte(e.path, 0) >= 0 {
		return tarHeader{}, nil, fmt.Errorf("imager: tar: invalid path %q", e.path)
	}
	h := tarHeader{mtime: tmpl.mtime}
	name := e.path
	switch e.kind {
	case KindFile:
		h.typeflag, h.mode, h.size = tarTypeReg, 0o666&^tarUmask, e.size
	case KindExecutable:
		h.typeflag, h.mode, h.size = tarTypeReg, 0o777&^tarUmask, e.size
	case KindDir, KindSubmodule:
		h.typeflag, h.mode = tarTypeDir, 0o777&^tarUmask
		name += "/"
	case KindSymlink:
		h.typeflag, h.mode = tarTypeSymlnk, 0o777
		if int64(len(e.target)) != e.size {
			return tarHeader{}, nil, fmt.Errorf("imager: tar: symlink %s: target has %d bytes, size says %d", e.path, len(e.target), e.size)
		}
	default:
		return tarHeader{}, nil, fmt.Errorf("imager: tar: %s: unsupported entry kind %v", e.path, e.kind)
	}
	if h.size < 0 {
		return tarHeader{}, nil, fmt.Errorf("imager: tar: %s: negative size %d", e.path, e.size)
	}
	var ext []byte
	if len(name) > tarNameLen {
		plen := tarPathPrefix(name)
		if rest := len(name) - plen - 1; plen > 0 && rest <= tarNameLen {
			h.prefix, h.name = name[:plen], name[plen+1:]
		} else {
			h.name = e.blob.String() + ".data"
			ext = paxRecord(ext, "path", name)
		}
	} else {
		h.name = name
	}
	if e.kind == KindSymlink {
		if len(e.target) > tarLinknameLen {
			h.linkname = "see " + e.blob.String() + ".paxheader"
			ext = paxRecord(ext, "linkpath", e.target)
		} else {
			h.linkname = e.target
		}
	}
	if h.size > tarMaxOctal11 {
		ext = paxRecord(ext, "size", strconv.FormatInt(h.size, 10))
		h.size = 0
	}
	return h, ext, nil
}

// paxBlocks returns a pax header block named name with typeflag typ
// followed by records padded to a block, as git writes them.
func paxBlocks(name string, typ byte, records []byte, mtime int64) []byte {
	n := int64(len(records))
	out := make([]byte, tarBlockSize+n+tarBlockPadding(n))
	h := tarHeader{name: name, typeflag: typ, mode: 0o666, size: n, mtime: mtime}
	h.marshal(out[:tarBlockSize])
	copy(out[tarBlockSize:], records)
	return out
}
