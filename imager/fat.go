package imager

// FAT images.
//
// BuildFAT lays out a FAT16 or FAT32 file system holding a tree, without a
// partition table, as an extent table: generated boot sectors, FATs and
// directories, file contents as blob ranges, free space as zeros. It writes
// what MirageOS's FAT reader (ocaml-fat) needs and what Linux, dosfstools
// and mtools accept.
//
// Limits, honestly:
//   - Read-only by design: no free-space slack beyond what the FAT type's
//     minimum cluster count imposes; a writer mounting the image gets an
//     almost full volume.
//   - FAT16 is chosen whenever the tree fits (Mirage reads FAT16 only): at
//     most 65524 clusters of at most 32 KiB (about 2 GiB), files under
//     2 GiB (Mirage's sizes are int32), a fixed root area of at most 65535
//     entries rounded down to whole sectors. Otherwise FAT32: files under
//     4 GiB, at most 0x0FFFFFF5 clusters of 32 KiB, and at most 2^32-1
//     sectors (2 TiB at 512-byte sectors, 16 TiB at 4096).
//   - The smallest cluster size that fits is used; FAT16 volumes have at
//     least 4085 clusters (2 MiB at 512 bytes), FAT32 at least 65525
//     (32 MiB): the unused part is zeros (holes), never stored.
//   - No FAT12, no partition table, no boot code (a stub that asks the BIOS
//     for the next boot device), no volume label (Mirage would list a
//     volume-label entry as a file; the boot sector says "NO NAME").
//   - Names: every entry gets a long name (UTF-16, at most 255 units,
//     always NUL-terminated and 0xFFFF-padded as Mirage compares raw bytes)
//     and a deterministic 8.3 alias: the exact 8.3 name Mirage looks the name
//     up by when Mirage takes it for a DOS name ("README", "MY FILE.TXT"),
//     else the upper-cased name when it is a valid 8.3 name, else a basis
//     name with ~N, the lowest N free in its directory, in tree order (not
//     Windows' hashed or Linux's random aliases past ~4 / ~9). Names FAT
//     cannot hold are refused, never mangled: equal but for case, with
//     "*/:<>?\| or control characters, ending in a dot or a space (readers
//     drop those), longer than 255 units, not valid UTF-8.
//   - Mirage converts looked-up names to UTF-16 byte by byte: it cannot find
//     non-ASCII names (Linux and mtools can). FAT16 images warn about those,
//     and about DOS-like names whose 8.3 name another entry already holds.
//   - At most 65536 32-byte entries per directory (long-name entries count).
//   - Every timestamp is the commit time, clamped to 1980..2107, in UTC;
//     the volume serial number is derived from the commit id.
//   - Symlinks are followed by default (FAT has none), or skipped; submodules
//     are empty directories; executables are plain files.
//   - Files are contiguous; directories come first in the data area, then
//     files, both in git's tree order.

import (
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Boot sector (BPB) field offsets, common to FAT16 and FAT32.
const (
	bsJmpBoot    = 0  // 3: jump over the BPB
	bsOEMName    = 3  // 8: who formatted the volume
	bpbBytsPerSe = 11 // u16: bytes per sector
	bpbSecPerClu = 13 // u8: sectors per cluster
	bpbRsvdSecCn = 14 // u16: reserved sectors (boot sector onwards)
	bpbNumFATs   = 16 // u8: number of FATs
	bpbRootEntCn = 17 // u16: FAT16 fixed root entries; 0 on FAT32
	bpbTotSec16  = 19 // u16: total sectors when < 65536, else 0
	bpbMedia     = 21 // u8: media descriptor, 0xF8 fixed disk
	bpbFATSz16   = 22 // u16: sectors per FAT on FAT16; 0 on FAT32
	bpbSecPerTrk = 24 // u16: geometry hint (CHS), unused by LBA readers
	bpbNumHeads  = 26 // u16: geometry hint
	bpbHiddSec   = 28 // u32: sectors before the volume: 0, no partition table
	bpbTotSec32  = 32 // u32: total sectors when >= 65536 (always on FAT32)
)

// FAT32's BPB fields after the common ones.
const (
	bpb32FATSz32  = 36 // u32: sectors per FAT
	bpb32ExtFlags = 40 // u16: 0: FATs mirrored
	bpb32FSVer    = 42 // u16: version 0.0
	bpb32RootClus = 44 // u32: first cluster of the root directory
	bpb32FSInfo   = 48 // u16: sector of the FSInfo structure
	bpb32BkBootSe = 50 // u16: sector of the backup boot sector
)

// Extended boot sector fields: the same ones in the same order on FAT16
// (from offset bs16) and FAT32 (from bs32), offsets relative to those.
const (
	bs16       = 36
	bs32       = 64
	bsDrvNum   = 0  // u8: BIOS drive number, 0x80
	bsBootSig  = 2  // u8: 0x29: the next three fields are present
	bsVolID    = 3  // u32: volume serial number
	bsVolLab   = 7  // 11: volume label
	bsFilSysTy = 18 // 8: "FAT16   " or "FAT32   " (informative only)
	bsBootCode = 26 // boot code
)

// Signature and FSInfo fields.
const (
	bsSignature      = 510 // u16: 0xAA55 (bytes 0x55, 0xAA)
	fsiLeadSig       = 0   // u32: 0x41615252
	fsiStrucSig      = 484 // u32: 0x61417272
	fsiFreeCount     = 488 // u32: free clusters
	fsiNxtFree       = 492 // u32: hint: first free cluster
	fsiTrailSig      = 508 // u32: 0xAA550000
	fat32FSInfoSec   = 1
	fat32BackupBoot  = 6
	fat32Reserved    = 32 // reserved sectors on FAT32, as mkfs.fat and Windows use
	fat16Reserved    = 1
	fatMedia         = 0xF8
	fatSecPerTrack   = 32 // mkfs.fat's geometry for an image file
	fatHeads         = 64
	fatDriveNumber   = 0x80
	fatExtBootSig    = 0x29
	fatNumFATs       = 2
	fatMaxClusterLen = 32 << 10
)

// Directory entry fields (32 bytes).
const (
	dirEntrySize   = 32
	dirName        = 0  // 11: 8.3 name, space padded
	dirAttr        = 11 // u8
	dirNTRes       = 12 // u8: 0
	dirCrtTimeTent = 13 // u8: tenths of a second (0..199)
	dirCrtTime     = 14 // u16
	dirCrtDate     = 16 // u16
	dirLstAccDate  = 18 // u16
	dirFstClusHI   = 20 // u16: high half of the first cluster (FAT32)
	dirWrtTime     = 22 // u16
	dirWrtDate     = 24 // u16
	dirFstClusLO   = 26 // u16
	dirFileSize    = 28 // u32

	attrDirectory = 0x10
	attrArchive   = 0x20
	attrLongName  = 0x0F

	// Long-name (LFN) entry fields.
	lfnOrd       = 0  // u8: sequence number, lfnLast on the first stored
	lfnName1     = 1  // 5 UTF-16 units
	lfnAttr      = 11 // u8: attrLongName
	lfnChksum    = 13 // u8: checksum of the 8.3 name
	lfnName2     = 14 // 6 units
	lfnName3     = 28 // 2 units
	lfnLast      = 0x40
	lfnUnits     = 13
	maxNameUnits = 255

	// maxDirEntries is the most 32-byte entries a directory may hold
	// (Linux's FAT_MAX_DIR_SIZE is 2 MiB).
	maxDirEntries = 65536
)

// Cluster counts that decide the FAT type (Microsoft's FAT spec, Linux,
// dosfstools and ocaml-fat agree on them).
const (
	fat16MinClusters = 4085
	fat16MaxClusters = 65524
	fat32MinClusters = 65525
	fat32MaxClusters = 0x0FFFFFF5
	fat16EOC         = 0xFFFF
	fat32EOC         = 0x0FFFFFFF
	fat16MaxFile     = math.MaxInt32  // Mirage reads sizes as int32
	fat32MaxFile     = math.MaxUint32 // the directory entry's size field
	fat16MinRootEnts = 512
	fatSmallTable    = 64 << 10 // FAT prefixes up to this size are kept as data
)

// ErrFATUnrepresentable is wrapped by the error BuildFAT returns for a tree
// FAT cannot hold.
var ErrFATUnrepresentable = errors.New("imager: tree cannot be represented as FAT")

// FATRefusal lists every path FAT cannot represent and why.
type FATRefusal struct {
	FATType  int // the type tried: 16 or 32, 0 when no type could hold the names
	Problems []Warning
}

func (r *FATRefusal) Error() string {
	var b strings.Builder
	typ := "FAT"
	if r.FATType != 0 {
		typ = fmt.Sprintf("FAT%d", r.FATType)
	}
	fmt.Fprintf(&b, "%v (%s), %d problem(s):", ErrFATUnrepresentable, typ, len(r.Problems))
	for _, p := range r.Problems {
		b.WriteString("\n  ")
		if p.Path == "" {
			b.WriteString("/")
		} else {
			b.WriteString(p.Path)
		}
		b.WriteString(": ")
		b.WriteString(p.Msg)
	}
	return b.String()
}

func (r *FATRefusal) Unwrap() error { return ErrFATUnrepresentable }

// fatTable is a FAT image's files and directories, one compact row each
// (fatNode), with every path in one string and every directory's children
// in one index: what directory entries are made of on demand. Node 0 is the
// root; the others are in tree order.
type fatTable struct {
	names string           // each node's path, in node order
	nodes []fatNode        // the root, then the tree's entries
	dirs  []fatDir         // what directories have more than files
	kids  []uint32         // children of each directory, in tree order: dirs[d].kids onwards
	big   map[uint32]int64 // sizes of files over 4 GiB - 1 (refused; kept for the messages)
	// Set by layout:
	g   *fatGeometry
	ts  fatStamp
	mem []uint32 // member -> node: the FAT16 root, directories, then files
}

// fatNode is a file or directory of the image.
type fatNode struct {
	blob     BlobID // files: the content
	size     uint32 // files: content bytes (see fatTable.size); directories: index in fatTable.dirs
	path     uint32 // where the path starts in names; it ends where the next node's starts
	cluster  uint32 // first cluster, 0 for empty files and the FAT16 root
	short    [11]byte
	lfn      uint8 // long-name entries
	dir      bool
	mirage   uint8 // why MirageOS's reader cannot look this name up (fatMirage*)
	mirageOK bool  // stored as the 8.3 name Mirage looks it up by
}

// fatDir is the rest of a directory's row.
type fatDir struct {
	parent  uint32 // node of the parent directory (the root's is itself)
	kids    uint32 // first child in fatTable.kids
	nkids   uint32 // number of children
	entries uint32 // 32-byte entries, dots and LFNs included
}

// size is node i's content size (0 for a directory).
func (t *fatTable) size(i int) int64 {
	n := &t.nodes[i]
	switch {
	case n.dir:
		return 0
	case n.size == math.MaxUint32:
		return t.big[uint32(i)]
	}
	return int64(n.size)
}

// dirOf is directory node i's fatDir.
func (t *fatTable) dirOf(i int) *fatDir { return &t.dirs[t.nodes[i].size] }

// Why MirageOS cannot look a name up (fatNode.mirage).
const (
	fatMirageOK       = iota
	fatMirageDupShort // its 8.3 name is another entry's
	fatMirageBadShort // its 8.3 form cannot be stored
)

// pathOf is node i's path ("" for the root).
func (t *fatTable) pathOf(i int) string {
	end := len(t.names)
	if i+1 < len(t.nodes) {
		end = int(t.nodes[i+1].path)
	}
	return t.names[t.nodes[i].path:end]
}

// nameOf is node i's name, the last component of its path.
func (t *fatTable) nameOf(i int) string {
	p := t.pathOf(i)
	return p[strings.LastIndexByte(p, '/')+1:]
}

// children lists directory d's children.
func (t *fatTable) children(d int) []uint32 {
	n := t.dirOf(d)
	return t.kids[n.kids : n.kids+n.nkids]
}

// BuildFAT lays out the FAT image of tree. See the limits above.
func BuildFAT(tree *Tree, blobs BlobReader, opts Options) (*Layout, []Warning, error) {
	bps := int64(opts.SectorSize)
	switch bps {
	case 0:
		bps = 512
	case 512, 4096:
	default:
		return nil, nil, fmt.Errorf("imager: fat: sector size %d not supported (want 512 or 4096)", opts.SectorSize)
	}
	if opts.FATType != 0 && opts.FATType != 16 && opts.FATType != 32 {
		return nil, nil, fmt.Errorf("imager: fat: FAT type %d not supported (want 16 or 32)", opts.FATType)
	}
	var warns []Warning
	switch opts.Symlinks {
	case SymlinksDefault, SymlinksFollow:
		tree, warns = FollowSymlinks(tree)
	case SymlinksSkip:
		tree, warns = SkipSymlinks(tree)
	case SymlinksKeep:
		return nil, nil, errors.New("imager: fat: symlinks cannot be kept: FAT has no symlinks (use follow or skip)")
	default:
		return nil, nil, fmt.Errorf("imager: fat: unknown symlink mode %q", opts.Symlinks)
	}
	// One error lists every problem: those of the names and sizes, then
	// those of the type tried (forced, or FAT32 when FAT16 does not fit).
	t, problems := fatTree(tree)
	cc := countClusters(t)
	typ := opts.FATType
	var g *fatGeometry
	if typ == 0 {
		var p16 []Warning
		if g, p16 = planFAT(t, &cc, 16, bps); g == nil {
			var p32 []Warning
			if g, p32 = planFAT(t, &cc, 32, bps); g == nil {
				typ, problems = 32, append(problems, p32...)
			} else {
				w := p16[0]
				if w.Path == "" {
					w.Path = "/"
				}
				warns = append(warns, Warning{Path: "/", Msg: fmt.Sprintf(
					"FAT32 chosen, which MirageOS's FAT reader cannot read: the tree does not fit FAT16 (%s: %s; %d reason(s) in all)", w.Path, w.Msg, len(p16))})
			}
		}
	} else {
		var p []Warning
		g, p = planFAT(t, &cc, typ, bps)
		problems = append(problems, p...)
	}
	if len(problems) > 0 {
		if typ == 0 && g != nil && g.fat32 {
			typ = 32
		}
		return nil, warns, &FATRefusal{FATType: typ, Problems: problems}
	}
	if !g.fat32 {
		// The image is for Mirage: say which names it cannot look up.
		for i := 1; i < len(t.nodes); i++ {
			n := &t.nodes[i]
			switch {
			case n.mirage == fatMirageDupShort:
				warns = append(warns, Warning{Path: t.pathOf(i), Msg: "MirageOS's FAT reader looks this name up by its 8.3 name, which another entry of the directory already has: it would find that entry"})
			case n.mirage == fatMirageBadShort:
				warns = append(warns, Warning{Path: t.pathOf(i), Msg: "MirageOS's FAT reader looks this name up by its 8.3 name, which FAT cannot store (a part starts or ends with a space): it will not find it"})
			case !isASCII(t.nameOf(i)) && !n.mirageOK:
				warns = append(warns, Warning{Path: t.pathOf(i), Msg: "non-ASCII name: MirageOS's FAT reader converts looked-up names to UTF-16 byte by byte and will not find it (Linux and mtools will)"})
			}
		}
	}
	return g.layout(t, tree, blobs), warns, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// fatTree builds the node table, checks names and sizes FAT cannot hold
// whatever its type, and assigns 8.3 aliases.
func fatTree(tree *Tree) (*fatTable, []Warning) {
	return fatTreeOn(tree, fatWorkers(len(tree.Entries)+1))
}

// fatTreeOn is fatTree checking directories on up to workers goroutines;
// the result does not depend on workers.
func fatTreeOn(tree *Tree, workers int) (*fatTable, []Warning) {
	var problems []Warning
	n := 0
	for i := range tree.Entries {
		n += len(tree.Entries[i].Path)
	}
	t := &fatTable{nodes: make([]fatNode, 1, len(tree.Entries)+1)}
	if n > math.MaxUint32 || len(tree.Entries) >= math.MaxUint32 {
		return t, []Warning{{Path: "", Msg: fmt.Sprintf("%d entries with %d bytes of paths: at most 4 GiB", len(tree.Entries), n)}}
	}
	var names strings.Builder
	names.Grow(n)
	t.nodes[0].dir = true
	t.dirs = []fatDir{{}}
	parents := make([]uint32, 1, len(tree.Entries)+1) // of each node, while building
	dirNodes := []uint32{0}                           // node of each fatDir
	dirs := map[string]uint32{"": 0}
	// Siblings are listed together: the last parent found is tried first.
	lastDir, lastParent := "", uint32(0)
	for k := range tree.Entries {
		e := &tree.Entries[k]
		i := strings.LastIndexByte(e.Path, '/')
		dir := e.Path[:max(i, 0)]
		parent := lastParent
		if dir != lastDir {
			p, ok := dirs[dir]
			if !ok {
				// FollowSymlinks and SkipSymlinks list parents first.
				problems = append(problems, Warning{Path: e.Path, Msg: "listed without its parent directory"})
				continue
			}
			lastDir, lastParent, parent = dir, p, p
		}
		idx := uint32(len(t.nodes))
		nd := fatNode{path: uint32(names.Len())}
		switch e.Kind {
		case KindDir, KindSubmodule:
			nd.dir = true
			dirs[e.Path] = idx
			nd.size = uint32(len(t.dirs))
			t.dirs = append(t.dirs, fatDir{parent: parent})
			dirNodes = append(dirNodes, idx)
		default:
			nd.blob = e.Blob
			if e.Size >= 0 && e.Size < math.MaxUint32 {
				nd.size = uint32(e.Size)
			} else {
				nd.size = math.MaxUint32
				if t.big == nil {
					t.big = map[uint32]int64{}
				}
				t.big[idx] = e.Size
			}
			if e.Size < 0 {
				problems = append(problems, Warning{Path: e.Path, Msg: fmt.Sprintf("negative size %d", e.Size)})
			} else if e.Size > fat32MaxFile {
				problems = append(problems, Warning{Path: e.Path, Msg: fmt.Sprintf("is %d bytes: a FAT file holds at most 4 GiB - 1 (%d bytes)", e.Size, int64(fat32MaxFile))})
			}
		}
		name := e.Path[i+1:]
		if why := badFATName(name); why != "" {
			problems = append(problems, Warning{Path: e.Path, Msg: why})
		}
		nd.lfn = uint8(min(lfnEntries(name), math.MaxUint8))
		t.dirOf(int(parent)).nkids++
		t.nodes = append(t.nodes, nd)
		parents = append(parents, parent)
		names.WriteString(e.Path)
	}
	t.names = names.String()
	// Children in tree order, each directory's together.
	var k uint32
	for i := range t.dirs {
		t.dirs[i].kids = k
		k += t.dirs[i].nkids
		t.dirs[i].nkids = 0
	}
	t.kids = make([]uint32, k)
	for i := 1; i < len(t.nodes); i++ {
		p := t.dirOf(int(parents[i]))
		t.kids[p.kids+p.nkids] = uint32(i)
		p.nkids++
	}
	return t, t.checkDirs(dirNodes, workers, problems)
}

// fatParallelMin is the fewest nodes whose directories fatTree checks on
// more than one goroutine: on smaller trees a second goroutine and its
// scratch cost about what they save (slower at 1024 nodes, faster at 4096).
const fatParallelMin = 4096

// fatMaxWorkers caps the goroutines checking directories.
const fatMaxWorkers = 4

// fatWorkers is how many goroutines check the directories of a tree of
// nodes nodes.
func fatWorkers(nodes int) int {
	if nodes < fatParallelMin {
		return 1
	}
	return max(min(runtime.GOMAXPROCS(0), fatMaxWorkers), 1)
}

// checkDirs checks and names the children of every directory (dirs holds
// their nodes, in node order) and appends the problems to problems in
// directory order. With workers > 1 it splits dirs into contiguous ranges
// of about equal numbers of children, each checked on its own goroutine
// with its own scratch: a directory's check writes only its own fatDir and
// its children's names, so the ranges share nothing they write. A panic on
// a goroutine is raised again on the caller's, as the sequential code
// would raise it, for callers that recover (NBD connections) to see.
func (t *fatTable) checkDirs(dirs []uint32, workers int, problems []Warning) []Warning {
	ends := t.splitDirs(dirs, workers)
	if len(ends) == 1 {
		return t.checkDirRange(dirs, newDirScratch(), problems)
	}
	found := make([][]Warning, len(ends))
	panics := make([]any, len(ends))
	var wg sync.WaitGroup
	start := ends[0]
	for r, end := range ends[1:] {
		if end > start {
			wg.Add(1)
			go func(r int, dirs []uint32) {
				defer wg.Done()
				defer func() { panics[r] = recover() }()
				found[r] = t.checkDirRange(dirs, newDirScratch(), nil)
			}(r+1, dirs[start:end])
		}
		start = end
	}
	problems = t.checkDirRange(dirs[:ends[0]], newDirScratch(), problems)
	wg.Wait()
	for r, p := range found[1:] {
		if v := panics[r+1]; v != nil {
			panic(v)
		}
		problems = append(problems, p...)
	}
	return problems
}

// splitDirs cuts dirs into at most n contiguous ranges of about equal
// weight, a directory weighing its children plus one, and returns where
// each range ends. A directory is never cut, so one huge directory makes a
// range of its own; ranges may be empty.
func (t *fatTable) splitDirs(dirs []uint32, n int) []int {
	weight := func(d uint32) int64 { return int64(t.dirOf(int(d)).nkids) + 1 }
	if n <= 1 || len(dirs) < 2 {
		return []int{len(dirs)}
	}
	n = min(n, len(dirs))
	var total int64
	for _, d := range dirs {
		total += weight(d)
	}
	ends := make([]int, 0, n)
	var sum int64 // weight of dirs[:i]
	i := 0
	for r := int64(1); r < int64(n); r++ {
		goal := total * r / int64(n)
		// Take a directory while its middle is before the goal.
		for i < len(dirs) && 2*sum+weight(dirs[i]) <= 2*goal {
			sum += weight(dirs[i])
			i++
		}
		ends = append(ends, i)
	}
	return append(ends, len(dirs))
}

func newDirScratch() *dirScratch {
	return &dirScratch{seen: newNameSet(hashString), used: newNameSet(hashShort)}
}

// checkDirRange checks the children of the directories dirs, appending
// problems to problems, and assigns their 8.3 aliases.
func (t *fatTable) checkDirRange(dirs []uint32, sc *dirScratch, problems []Warning) []Warning {
	for _, d32 := range dirs {
		d := int(d32)
		dn := t.dirOf(d)
		kids := t.children(d)
		sc.load(t, kids)
		entries := 2 // "." and ".."
		if d == 0 {
			entries = 0
		}
		distinct := true // no two children's names are one upper-cased
		for j, c := range kids {
			if first, dup := sc.seen.add(sc.upper[j], c); dup {
				distinct = false
				problems = append(problems, Warning{Path: t.pathOf(int(c)), Msg: fmt.Sprintf("same name as %q but for case: FAT names are case-insensitive", t.nameOf(int(first)))})
			}
			entries += 1 + lfnEntries(sc.names[j])
		}
		dn.entries = uint32(min(entries, math.MaxUint32))
		if entries > maxDirEntries {
			problems = append(problems, Warning{Path: t.pathOf(d), Msg: fmt.Sprintf("directory needs %d 32-byte entries (long names included): FAT allows %d", entries, maxDirEntries)})
		}
		t.assignShortNames(kids, sc, distinct)
	}
	return problems
}

// dirScratch holds one directory's names while fatTree checks them and
// assigns their 8.3 aliases; it is reused from directory to directory, so
// that a tree of many small directories costs no allocation per name.
type dirScratch struct {
	names []string           // the children's names
	upper []string           // the same, upper-cased (substrings of one string per directory)
	arena []byte             // where upper is built
	ends  []int              // where each upper name ends in arena
	seen  *nameSet[string]   // upper-cased name -> first child with it
	used  *nameSet[[11]byte] // 8.3 names taken
	done  []bool             // children with their 8.3 name
}

// load reads the names of kids, upper-cased as strings.ToUpper does.
func (sc *dirScratch) load(t *fatTable, kids []uint32) {
	sc.names, sc.upper, sc.arena, sc.ends = sc.names[:0], sc.upper[:0], sc.arena[:0], sc.ends[:0]
	for _, c := range kids {
		name := t.nameOf(int(c))
		sc.names = append(sc.names, name)
		sc.arena = appendUpper(sc.arena, name)
		sc.ends = append(sc.ends, len(sc.arena))
	}
	all := string(sc.arena)
	start := 0
	for _, end := range sc.ends {
		sc.upper = append(sc.upper, all[start:end])
		start = end
	}
	sc.seen.reset(len(kids))
	sc.used.reset(len(kids))
	sc.done = append(sc.done[:0], make([]bool, len(kids))...)
}

// appendUpper appends strings.ToUpper(s) to b, without allocating when s
// is ASCII.
func appendUpper(b []byte, s string) []byte {
	if !isASCII(s) {
		return append(b, strings.ToUpper(s)...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// badFATName says why a long name cannot be stored, or "".
func badFATName(name string) string {
	if plainFATName(name) {
		return ""
	}
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Sprintf("name %q is not a file name", name)
	case !utf8.ValidString(name):
		return "name is not valid UTF-8: FAT long names are UTF-16"
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return "name ends with a dot or a space: FAT readers drop them, so the name would not round-trip"
	case utf16Len(name) > maxNameUnits:
		return fmt.Sprintf("name is longer than FAT's %d UTF-16 units", maxNameUnits)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7F {
			return fmt.Sprintf("name has control character %U, which FAT forbids", r)
		}
		if strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Sprintf("name has %q, which FAT forbids", r)
		}
	}
	return ""
}

// fatForbidden marks the ASCII bytes a FAT long name cannot hold.
var fatForbidden = func() (f [utf8.RuneSelf]bool) {
	for c := 0; c < 0x20; c++ {
		f[c] = true
	}
	f[0x7F] = true
	for _, c := range `"*/:<>?\|` {
		f[c] = true
	}
	return f
}()

// plainFATName reports, quickly, that badFATName has nothing to say: an
// ASCII name of allowed bytes that is not "." or "..", ends in neither a
// dot nor a space, and fits. Any other name takes badFATName's full checks.
func plainFATName(name string) bool {
	n := len(name)
	if n == 0 || n > maxNameUnits || name[n-1] == '.' || name[n-1] == ' ' {
		return false
	}
	for i := 0; i < n; i++ {
		c := name[i]
		if c >= utf8.RuneSelf || fatForbidden[c] {
			return false
		}
	}
	return true
}

// lfnEntries is the number of long-name entries for name: its UTF-16 units
// plus the NUL unit that is always written (Mirage matches on it).
func lfnEntries(name string) int {
	units := utf16Len(name) + 1
	return (units + lfnUnits - 1) / lfnUnits
}

// utf16Len is the number of UTF-16 units of name (an invalid byte counts
// as U+FFFD, one unit), counted without converting it.
func utf16Len(name string) int {
	if isASCII(name) {
		return len(name)
	}
	n := 0
	for _, r := range name {
		n++
		if r >= 0x10000 {
			n++ // a surrogate pair
		}
	}
	return n
}

// shortChars are the characters an 8.3 name may hold besides A-Z and 0-9.
const shortChars = "!#$%&'()-@^_`{}~"

func validShortChar(c byte) bool { return shortValid[c] }

// shortValid marks the bytes validShortChar accepts.
var shortValid = func() (v [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		v[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		v[c] = true
	}
	for i := 0; i < len(shortChars); i++ {
		v[shortChars[i]] = true
	}
	return v
}()

// exactShortName returns the 8.3 form of name when its upper-cased form,
// up (strings.ToUpper(name)), is a valid 8.3 name as is.
func exactShortName(name, up string) ([11]byte, bool) {
	var s [11]byte
	if len(up) != len(name) { // a non-ASCII rune changed size
		return s, false
	}
	dot := -1
	for i := 0; i < len(up); i++ {
		switch c := up[i]; {
		case c == '.':
			if dot >= 0 {
				return s, false // a second dot
			}
			dot = i
		case !validShortChar(c):
			return s, false
		}
	}
	base, ext := up, ""
	if dot >= 0 {
		base, ext = up[:dot], up[dot+1:]
	}
	if len(base) < 1 || len(base) > 8 || len(ext) > 3 || (dot >= 0 && ext == "") {
		return s, false
	}
	copy(s[:], "           ")
	copy(s[:8], base)
	copy(s[8:], ext)
	return s, true
}

// shortBasis is the basis name of a long name (Microsoft's algorithm,
// which Linux follows): upper case, invalid characters as "_", spaces and
// leading dots removed, base up to 8 and extension (after the last dot)
// up to 3 characters.
func shortBasis(name string) (base, ext string) {
	clean := func(s string, n int) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			if b.Len() == n {
				break
			}
			switch {
			case r == ' ' || r == '.':
			case r < utf8.RuneSelf && validShortChar(byte(r)):
				b.WriteRune(r)
			default:
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	trimmed := strings.TrimLeft(name, ".")
	if i := strings.LastIndexByte(trimmed, '.'); i >= 0 {
		base, ext = clean(trimmed[:i], 8), clean(trimmed[i+1:], 3)
	} else {
		base = clean(trimmed, 8)
	}
	if base == "" {
		base = "_"
	}
	return base, ext
}

// mirageShortName returns the 8.3 name MirageOS's FAT reader (ocaml-fat)
// compares a looked-up name with, when it takes the name for a DOS name:
// every byte in A-Z, 0-9, space, !#$%&'()-@^_`{}~ or >= 0x80, one or two
// non-empty dot-separated parts of at most 8 and 3 bytes. Mirage then
// matches that name against the 8.3 entry only, never the long name, so
// such a name must be stored as its own 8.3 name. ok is false when the name
// is not such a DOS name, or when its 8.3 form is not storable (a part
// starting or ending with a space).
func mirageShortName(name string) (s [11]byte, dosName, ok bool) {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '.' && c != ' ' && c < 0x80 && !validShortChar(c) {
			return s, false, false
		}
	}
	// The non-empty dot-separated parts: more than two is no DOS name.
	var parts [2]string
	np := 0
	for rest := name; ; {
		p, after, more := strings.Cut(rest, ".")
		if p != "" {
			if np == len(parts) {
				return s, false, false
			}
			parts[np] = p
			np++
		}
		if !more {
			break
		}
		rest = after
	}
	switch {
	case np == 1 && len(parts[0]) <= 8:
	case np == 2 && len(parts[0]) <= 8 && len(parts[1]) <= 3:
	default:
		return s, false, false
	}
	for _, p := range parts[:np] {
		if strings.HasPrefix(p, " ") || strings.HasSuffix(p, " ") {
			return s, true, false
		}
	}
	copy(s[:], "           ")
	copy(s[:8], parts[0])
	copy(s[8:], parts[1])
	if s[0] == 0xE5 {
		s[0] = 0x05 // 0xE5 marks a deleted entry; readers map 0x05 back
	}
	return s, true, true
}

// assignShortNames gives every child in kids (a directory's, loaded in sc) a unique 8.3 name, in three
// passes so that the names that need a particular 8.3 name get it:
//  1. names MirageOS looks up by their 8.3 name only (see mirageShortName)
//     get exactly that name; a second such name mapping to the same 8.3
//     name cannot be told apart by Mirage (noted in mirage);
//  2. names that are valid 8.3 names once upper-cased ("readme.txt") get
//     the upper-cased name, as Windows and Linux would;
//  3. the others get BASIS~N.EXT with the lowest N free, in tree order
//     (deterministic; Windows switches to hashed aliases after ~4, Linux to
//     random ones after ~9: neither is reproducible).
//
// distinct says that no two of the names are one once upper-cased. Then,
// when no name took pass 1, pass 2's names cannot collide (an upper-cased
// valid 8.3 name is its 8.3 form, spaces aside, and they have none), so
// they are entered in the set of names taken only if pass 3 needs it.
func (t *fatTable) assignShortNames(kids []uint32, sc *dirScratch, distinct bool) {
	used, done := sc.used, sc.done
	mirage := 0
	for i, k := range kids {
		c := &t.nodes[k]
		s, dosName, ok := mirageShortName(sc.names[i])
		switch {
		case !ok:
			if dosName {
				c.mirage = fatMirageBadShort
			}
		case used.has(s):
			c.mirage = fatMirageDupShort
		default:
			c.short, done[i], c.mirageOK = s, true, true
			used.put(s, 0)
			mirage++
		}
	}
	unchecked := distinct && mirage == 0 // pass 2 may skip the set
	inSet := true                        // every name given so far is in used
	for i, k := range kids {
		if done[i] {
			continue
		}
		s, ok := exactShortName(sc.names[i], sc.upper[i])
		switch {
		case !ok:
		case unchecked:
			t.nodes[k].short, done[i] = s, true
			inSet = false
		default:
			if _, taken := used.add(s, 0); !taken {
				t.nodes[k].short, done[i] = s, true
			}
		}
	}
	var next map[string]int // basis -> next N to try, so many similar names stay linear
	for i, k := range kids {
		if done[i] {
			continue
		}
		if !inSet {
			for j, kj := range kids {
				if done[j] {
					used.put(t.nodes[kj].short, 0)
				}
			}
			inSet = true
		}
		if next == nil {
			next = map[string]int{}
		}
		base, ext := shortBasis(sc.names[i])
		key := base + "." + ext
		for n := max(next[key], 1); ; n++ {
			tail := "~" + strconv.Itoa(n)
			b := base
			if len(b)+len(tail) > 8 {
				b = b[:8-len(tail)]
			}
			var s [11]byte
			copy(s[:], "           ")
			copy(s[:8], b+tail)
			copy(s[8:], ext)
			if _, taken := used.add(s, 0); !taken {
				t.nodes[k].short = s
				next[key] = n + 1
				break
			}
		}
	}
}

// fatGeometry is a planned volume.
type fatGeometry struct {
	fat32       bool
	bps         int64 // bytes per sector
	spc         int64 // sectors per cluster
	reserved    int64 // reserved sectors
	fatSectors  int64 // sectors per FAT
	rootEntries int64 // FAT16 fixed root entries
	rootSectors int64
	clusters    int64 // data clusters
	used        int64 // clusters holding data
	totalSecs   int64
}

func (g *fatGeometry) clusterBytes() int64 { return g.bps * g.spc }
func (g *fatGeometry) dataStart() int64 {
	return g.reserved + fatNumFATs*g.fatSectors + g.rootSectors
}

// planFAT chooses the geometry of a FAT16 or FAT32 volume for the tree, or
// returns why it does not fit.
func planFAT(t *fatTable, cc *clusterCounts, fatType int, bps int64) (*fatGeometry, []Warning) {
	g := &fatGeometry{fat32: fatType == 32, bps: bps}
	var problems []Warning
	root := t.dirOf(0)
	minC, maxC := int64(fat16MinClusters), int64(fat16MaxClusters)
	if g.fat32 {
		minC, maxC = fat32MinClusters, fat32MaxClusters
		g.reserved = fat32Reserved
	} else {
		g.reserved = fat16Reserved
		if cc.maxFile > fat16MaxFile { // else no file is over FAT16's limit: no pass over the nodes
			for i := range t.nodes {
				if size := t.size(i); !t.nodes[i].dir && size > fat16MaxFile && size <= fat32MaxFile { // larger ones are already refused
					problems = append(problems, Warning{Path: t.pathOf(i), Msg: fmt.Sprintf("is %d bytes: FAT16 files must stay under 2 GiB (Mirage reads sizes as int32); FAT32 allows up to 4 GiB - 1", size)})
				}
			}
		}
		perSector := bps / dirEntrySize
		maxRoot := (math.MaxUint16 / perSector) * perSector
		need := (max(int64(root.entries), fat16MinRootEnts) + perSector - 1) / perSector * perSector
		if need > maxRoot {
			problems = append(problems, Warning{Path: "", Msg: fmt.Sprintf("root directory needs %d 32-byte entries: FAT16's fixed root holds at most %d (FAT32 has no fixed root)", root.entries, maxRoot)})
		}
		g.rootEntries = need
		g.rootSectors = need / perSector
	}
	// The largest cluster needs the fewest clusters: if even it overflows,
	// fail without trying the smaller ones (a big tree refused by FAT16
	// would otherwise pay seven passes over its nodes).
	g.spc = fatMaxClusterLen / g.bps
	need := cc.needed(t, g.clusterBytes(), g.fat32)
	if need <= maxC {
		for g.spc = 1; g.spc < fatMaxClusterLen/g.bps; g.spc *= 2 {
			if n := cc.needed(t, g.clusterBytes(), g.fat32); n <= maxC {
				need = n
				break
			}
		}
	}
	if need > maxC {
		var data int64
		for i := range t.nodes {
			data += t.size(i)
		}
		problems = append(problems, Warning{Path: "", Msg: fmt.Sprintf("tree needs %d clusters of %d bytes (%d bytes of file data): FAT%d holds at most %d", need, g.clusterBytes(), data, fatType, maxC)})
	}
	if len(problems) > 0 {
		return nil, problems
	}
	g.used = need
	g.clusters = max(need, minC)
	entryBytes := int64(2)
	if g.fat32 {
		entryBytes = 4
	}
	g.fatSectors = ((g.clusters+2)*entryBytes + bps - 1) / bps
	g.totalSecs = g.dataStart() + g.clusters*g.spc
	if g.totalSecs > math.MaxUint32 {
		return nil, []Warning{{Path: "", Msg: fmt.Sprintf("volume needs %d sectors of %d bytes: FAT counts at most 2^32-1 (try 4096-byte sectors)", g.totalSecs, bps)}}
	}
	return g, nil
}

// Cluster sizes a volume may have: fatMinClusterLen << k bytes for k
// below fatClusterSizes, up to fatMaxClusterLen.
const (
	fatMinClusterShift = 9
	fatMinClusterLen   = 1 << fatMinClusterShift
	fatClusterSizes    = 7
)

// clusterCounts is what planning a volume needs of every node, gathered
// in one pass: planFAT tries several types and cluster sizes, and a pass
// over a big tree's nodes for each costs more than the rest of the plan.
type clusterCounts struct {
	// byLen[k]: data clusters of fatMinClusterLen << k bytes that the
	// files and directories other than the root need.
	byLen   [fatClusterSizes]int64
	maxFile int64 // the largest file's size
}

// countClusters gathers t's clusterCounts.
func countClusters(t *fatTable) clusterCounts {
	var cc clusterCounts
	for i := 1; i < len(t.nodes); i++ {
		var b int64
		if t.nodes[i].dir {
			b = int64(t.dirOf(i).entries) * dirEntrySize
		} else {
			b = t.size(i)
			cc.maxFile = max(cc.maxFile, b)
		}
		for k := range cc.byLen {
			cc.byLen[k] += (b + fatMinClusterLen<<k - 1) >> (fatMinClusterShift + k)
		}
	}
	return cc
}

// needed is the number of data clusters of cb bytes (a power of two from
// fatMinClusterLen to fatMaxClusterLen) the volume needs: the FAT16 root
// lives outside the data area; an empty FAT32 root still has a cluster.
func (cc *clusterCounts) needed(t *fatTable, cb int64, fat32 bool) int64 {
	k := bits.TrailingZeros64(uint64(cb)) - fatMinClusterShift
	n := cc.byLen[k]
	if fat32 {
		ents := int64(t.dirOf(0).entries)
		n += max((ents*dirEntrySize+cb-1)/cb, 1)
	}
	return n
}

// fatRun is a contiguous chain of clusters.
type fatRun struct {
	start, n uint32
}

// layout allocates clusters (directories, then files, in tree order) and
// writes the extent table: boot sectors and FATs as plain extents, then
// one member per directory and non-empty file (the FAT16 root first),
// whose directory entries are made on demand.
func (g *fatGeometry) layout(t *fatTable, tree *Tree, blobs BlobReader) *Layout {
	cb := g.clusterBytes()
	next := uint32(2)
	t.mem = make([]uint32, 0, len(t.nodes))
	t.g, t.ts = g, fatTimestamp(tree.Time)
	if !g.fat32 {
		t.mem = append(t.mem, 0)
	}
	alloc := func(i int, bytes int64) {
		c := (bytes + cb - 1) / cb
		if c == 0 {
			return
		}
		t.nodes[i].cluster = next
		t.mem = append(t.mem, uint32(i))
		next += uint32(c)
	}
	for i := range t.nodes {
		if n := &t.nodes[i]; n.dir && (i != 0 || g.fat32) {
			alloc(i, max(int64(t.dirOf(i).entries)*dirEntrySize, 1))
		}
	}
	for i := range t.nodes {
		if n := &t.nodes[i]; !n.dir {
			alloc(i, t.size(i))
		}
	}

	serial := volumeSerial(tree.CommitID)
	var b Builder
	bps := g.bps
	boot := g.bootSector(serial)
	b.Data("fat boot sector", boot)
	if g.fat32 {
		fsinfo := g.fsInfo(uint32(next))
		b.Data("fat fsinfo", fsinfo)
		b.Zeros("fat reserved sectors", (fat32BackupBoot-fat32FSInfoSec-1)*bps)
		b.Data("fat backup boot sector", boot)
		b.Data("fat backup fsinfo", fsinfo)
		b.Zeros("fat reserved sectors", (g.reserved-fat32BackupBoot-2)*bps)
	}

	gen := &fatGen{tab: t, fat32: g.fat32}
	usedBytes := int64(next) * gen.entrySize()
	var table []byte
	if usedBytes <= fatSmallTable {
		table = make([]byte, usedBytes)
		gen.ReadAt(table, 0)
	}
	for i := 1; i <= fatNumFATs; i++ {
		desc := fmt.Sprintf("fat #%d", i)
		if table != nil {
			b.Data(desc, table)
		} else {
			b.Gen(desc, gen, usedBytes)
		}
		b.Zeros(desc+" (free clusters)", g.fatSectors*bps-usedBytes)
	}
	b.members(t, len(t.mem))
	b.Zeros("fat free clusters", g.totalSecs*bps-b.Pos())
	return b.Layout(blobs)
}

// Pieces of a FAT member.
const (
	fatPartData  = iota // directory entries, or a file's content
	fatPartSlack        // zeros to the end of the last cluster (the FAT16 root's unused entries)
)

var (
	_ memberTable   = (*fatTable)(nil)
	_ memberOffsets = (*fatTable)(nil)
)

// rootMembers is 1 when the first member is the FAT16 root (which has no
// clusters), else 0.
func (t *fatTable) rootMembers() int {
	if t.g.fat32 {
		return 0
	}
	return 1
}

// clusters is the number of clusters node i takes.
func (t *fatTable) clusters(i int) int64 {
	n := &t.nodes[i]
	cb := t.g.clusterBytes()
	if n.dir {
		return (max(int64(t.dirOf(i).entries)*dirEntrySize, 1) + cb - 1) / cb
	}
	return (t.size(i) + cb - 1) / cb
}

// offset is where member m starts: the FAT16 root after the FATs, the
// others at their first cluster.
func (t *fatTable) offset(m int) int64 {
	g := t.g
	if m < t.rootMembers() {
		return (g.reserved + fatNumFATs*g.fatSectors) * g.bps
	}
	return g.dataStart()*g.bps + int64(t.nodes[t.mem[m]].cluster-2)*g.clusterBytes()
}

func (t *fatTable) pieces(m int) (ps pieces) {
	i := int(t.mem[m])
	n := &t.nodes[i]
	var data, total int64
	kind := ExtentData
	switch {
	case n.dir && n.cluster == 0: // the FAT16 root
		data, total = int64(t.dirOf(i).entries)*dirEntrySize, t.g.rootSectors*t.g.bps
	case n.dir:
		data, total = int64(t.dirOf(i).entries)*dirEntrySize, t.clusters(i)*t.g.clusterBytes()
	default:
		data, total, kind = t.size(i), t.clusters(i)*t.g.clusterBytes(), ExtentBlob
	}
	if data > 0 {
		ps.add(piece{len: data, kind: kind, part: fatPartData})
	}
	if total > data {
		ps.add(piece{len: total - data, kind: ExtentZero, part: fatPartSlack})
	}
	return ps
}

func (t *fatTable) blob(m int) BlobID { return t.nodes[t.mem[m]].blob }

// hint is 0: a FAT node has no room for one without growing (see Tree.Hints).
func (t *fatTable) hint(int) uint64 { return 0 }

func (t *fatTable) desc(m int, part uint8) string {
	i := int(t.mem[m])
	n := &t.nodes[i]
	name := t.pathOf(i)
	if n.dir {
		name = "dir " + name
		if i == 0 {
			name = "dir /"
		}
	}
	switch {
	case part == fatPartData:
		return name
	case n.dir && n.cluster == 0:
		return name + " (unused entries)"
	}
	return name + " (slack)"
}

// gen fills p with directory entries of member m's directory from rel:
// "." and ".." (not in the root), then each child's long name and 8.3
// entry.
func (t *fatTable) gen(m int, _ uint8, p []byte, rel int64) {
	d := int(t.mem[m])
	dn := &t.nodes[d]
	pos := int64(0)
	end := rel + int64(len(p))
	// put copies the entries b, which start at pos, where they overlap p.
	put := func(b []byte) {
		if e := pos + int64(len(b)); e > rel {
			copy(p[max(pos-rel, 0):], b[max(rel-pos, 0):])
		}
		pos += int64(len(b))
	}
	var buf [(1 + (maxNameUnits+lfnUnits)/lfnUnits) * dirEntrySize]byte
	if d != 0 {
		var dot, dotdot [11]byte
		copy(dot[:], ".          ")
		copy(dotdot[:], "..         ")
		out := appendDirEntry(buf[:0], dot, attrDirectory, dn.cluster, 0, t.ts)
		parent := t.dirOf(d).parent
		pc := t.nodes[parent].cluster
		if parent == 0 {
			pc = 0 // ".." of a root child is cluster 0, even on FAT32
		}
		put(appendDirEntry(out, dotdot, attrDirectory, pc, 0, t.ts))
	}
	for _, k := range t.children(d) {
		if pos >= end {
			return
		}
		c := &t.nodes[k]
		n := int64(1+int(c.lfn)) * dirEntrySize
		if pos+n <= rel {
			pos += n
			continue
		}
		out := appendLFN(buf[:0], t.nameOf(int(k)), lfnChecksum(c.short))
		attr := byte(attrArchive)
		if c.dir {
			attr = attrDirectory
		}
		put(appendDirEntry(out, c.short, attr, c.cluster, uint32(t.size(int(k))), t.ts))
	}
}

// bootSector writes the boot sector (BPB) of the volume.
func (g *fatGeometry) bootSector(serial uint32) []byte {
	s := make([]byte, g.bps)
	le := binary.LittleEndian
	copy(s[bsOEMName:], "GITBLK  ")
	le.PutUint16(s[bpbBytsPerSe:], uint16(g.bps))
	s[bpbSecPerClu] = byte(g.spc)
	le.PutUint16(s[bpbRsvdSecCn:], uint16(g.reserved))
	s[bpbNumFATs] = fatNumFATs
	s[bpbMedia] = fatMedia
	le.PutUint16(s[bpbSecPerTrk:], fatSecPerTrack)
	le.PutUint16(s[bpbNumHeads:], fatHeads)
	le.PutUint32(s[bpbHiddSec:], 0)
	if !g.fat32 && g.totalSecs < 1<<16 {
		le.PutUint16(s[bpbTotSec16:], uint16(g.totalSecs))
	} else {
		le.PutUint32(s[bpbTotSec32:], uint32(g.totalSecs))
	}
	// Boot code: INT 18h (no bootable disk: BIOS tries the next device),
	// then halt forever.
	bootCode := []byte{0xCD, 0x18, 0xF4, 0xEB, 0xFD}
	ext, fsType := bs16, "FAT16   "
	if g.fat32 {
		ext, fsType = bs32, "FAT32   "
		le.PutUint32(s[bpb32FATSz32:], uint32(g.fatSectors))
		le.PutUint16(s[bpb32ExtFlags:], 0)
		le.PutUint16(s[bpb32FSVer:], 0)
		le.PutUint32(s[bpb32RootClus:], 2)
		le.PutUint16(s[bpb32FSInfo:], fat32FSInfoSec)
		le.PutUint16(s[bpb32BkBootSe:], fat32BackupBoot)
	} else {
		le.PutUint16(s[bpbRootEntCn:], uint16(g.rootEntries))
		le.PutUint16(s[bpbFATSz16:], uint16(g.fatSectors))
	}
	copy(s[bsJmpBoot:], []byte{0xEB, byte(ext + bsBootCode - 2), 0x90})
	e := s[ext:]
	e[bsDrvNum] = fatDriveNumber
	e[bsBootSig] = fatExtBootSig
	le.PutUint32(e[bsVolID:], serial)
	copy(e[bsVolLab:], "NO NAME    ")
	copy(e[bsFilSysTy:], fsType)
	copy(e[bsBootCode:], bootCode)
	s[bsSignature], s[bsSignature+1] = 0x55, 0xAA
	return s
}

// fsInfo writes the FAT32 FSInfo sector: exact free count, next free hint.
func (g *fatGeometry) fsInfo(firstFree uint32) []byte {
	s := make([]byte, g.bps)
	le := binary.LittleEndian
	le.PutUint32(s[fsiLeadSig:], 0x41615252)
	le.PutUint32(s[fsiStrucSig:], 0x61417272)
	free := uint32(g.clusters+2) - firstFree
	le.PutUint32(s[fsiFreeCount:], free)
	if free == 0 {
		firstFree = 0xFFFFFFFF
	}
	le.PutUint32(s[fsiNxtFree:], firstFree)
	le.PutUint32(s[fsiTrailSig:], 0xAA550000)
	return s
}

// fatStamp is a FAT date and time.
type fatStamp struct {
	date, time uint16
	tenths     uint8
}

// fatTimestamp converts t (in UTC) to FAT's format, clamped to the years
// FAT can hold, 1980..2107.
func fatTimestamp(t time.Time) fatStamp {
	t = t.UTC()
	lo := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	hi := time.Date(2107, 12, 31, 23, 59, 59, 0, time.UTC)
	if t.Before(lo) {
		t = lo
	}
	if t.After(hi) {
		t = hi
	}
	return fatStamp{
		date:   uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day()),
		time:   uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2),
		tenths: uint8(t.Second()%2*100 + t.Nanosecond()/10_000_000),
	}
}

// volumeSerial derives the volume serial number from the commit id.
func volumeSerial(commit string) uint32 {
	h := sha1.Sum([]byte("gitblk fat serial " + commit))
	return binary.LittleEndian.Uint32(h[:4])
}

func appendDirEntry(out []byte, name [11]byte, attr byte, cluster, size uint32, ts fatStamp) []byte {
	var e [dirEntrySize]byte
	le := binary.LittleEndian
	copy(e[dirName:], name[:])
	e[dirAttr] = attr
	e[dirNTRes] = 0
	e[dirCrtTimeTent] = ts.tenths
	le.PutUint16(e[dirCrtTime:], ts.time)
	le.PutUint16(e[dirCrtDate:], ts.date)
	le.PutUint16(e[dirLstAccDate:], ts.date)
	le.PutUint16(e[dirFstClusHI:], uint16(cluster>>16))
	le.PutUint16(e[dirWrtTime:], ts.time)
	le.PutUint16(e[dirWrtDate:], ts.date)
	le.PutUint16(e[dirFstClusLO:], uint16(cluster))
	le.PutUint32(e[dirFileSize:], size)
	return append(out, e[:]...)
}

// appendLFN appends the long-name entries of name (at most maxNameUnits
// UTF-16 units), last part first: UTF-16 units, always a NUL unit, then
// 0xFFFF padding.
func appendLFN(out []byte, name string, sum byte) []byte {
	var ub [maxNameUnits + lfnUnits + 1]uint16
	units := ub[:0]
	for _, r := range name {
		if len(units) >= maxNameUnits {
			break
		}
		units = utf16.AppendRune(units, r)
	}
	units = append(units, 0)
	n := (len(units) + lfnUnits - 1) / lfnUnits
	for len(units) < n*lfnUnits {
		units = append(units, 0xFFFF)
	}
	le := binary.LittleEndian
	for seq := n; seq >= 1; seq-- {
		var e [dirEntrySize]byte
		e[lfnOrd] = byte(seq)
		if seq == n {
			e[lfnOrd] |= lfnLast
		}
		e[lfnAttr] = attrLongName
		e[lfnChksum] = sum
		part := units[(seq-1)*lfnUnits : seq*lfnUnits]
		for i, u := range part {
			var off int
			switch {
			case i < 5:
				off = lfnName1 + 2*i
			case i < 11:
				off = lfnName2 + 2*(i-5)
			default:
				off = lfnName3 + 2*(i-11)
			}
			le.PutUint16(e[off:], u)
		}
		out = append(out, e[:]...)
	}
	return out
}

// lfnChecksum is the checksum of an 8.3 name that ties long-name entries
// to their short entry.
func lfnChecksum(name [11]byte) byte {
	var sum byte
	for _, c := range name {
		sum = (sum>>1 | sum<<7) + c
	}
	return sum
}

// fatGen generates a FAT from its cluster runs: entries 0 and 1 hold the
// media byte and the end-of-chain mark, each run is a chain of consecutive
// clusters ending with the end-of-chain mark, the rest is free (0).
// Memory is one run per file or directory, whatever the volume's size.
type fatGen struct {
	runs  []fatRun  // sorted by start, disjoint; unused when tab is set
	tab   *fatTable // the runs are its members' clusters (the FAT16 root has none)
	fat32 bool
}

// nruns is the number of cluster runs.
func (f *fatGen) nruns() int {
	if f.tab == nil {
		return len(f.runs)
	}
	return len(f.tab.mem) - f.tab.rootMembers()
}

// run is cluster run i.
func (f *fatGen) run(i int) fatRun {
	if f.tab == nil {
		return f.runs[i]
	}
	n := int(f.tab.mem[i+f.tab.rootMembers()])
	return fatRun{start: f.tab.nodes[n].cluster, n: uint32(f.tab.clusters(n))}
}

var _ Generator = (*fatGen)(nil)

func (f *fatGen) entrySize() int64 {
	if f.fat32 {
		return 4
	}
	return 2
}

// entry is the FAT entry of cluster c.
func (f *fatGen) entry(c uint32, i int) uint32 {
	eoc, media := uint32(fat16EOC), uint32(0xFF00|fatMedia)
	if f.fat32 {
		eoc, media = fat32EOC, 0x0FFFFF00|fatMedia
	}
	switch c {
	case 0:
		return media
	case 1:
		return eoc
	}
	if i < f.nruns() {
		r := f.run(i)
		if c >= r.start && c < r.start+r.n {
			if c == r.start+r.n-1 {
				return eoc
			}
			return c + 1
		}
	}
	return 0
}

// ReadAt fills p with the FAT's bytes from off.
func (f *fatGen) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrNegative
	}
	es := f.entrySize()
	c := off / es
	// The run holding or following cluster c.
	nr := f.nruns()
	i := sort.Search(nr, func(i int) bool {
		r := f.run(i)
		return int64(r.start)+int64(r.n) > c
	})
	var buf [4]byte
	n := 0
	for n < len(p) {
		if c > math.MaxUint32 {
			clear(p[n:])
			return len(p), nil
		}
		for i < nr {
			if r := f.run(i); int64(r.start)+int64(r.n) > c {
				break
			}
			i++
		}
		v := f.entry(uint32(c), i)
		if f.fat32 {
			binary.LittleEndian.PutUint32(buf[:], v)
		} else {
			binary.LittleEndian.PutUint16(buf[:], uint16(v))
		}
		skip := (off + int64(n)) - c*es
		n += copy(p[n:], buf[skip:es])
		c++
	}
	return n, nil
}
