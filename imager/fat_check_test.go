package imager

// An independent structural reader of FAT images for the tests: it reads
// the boot sector as the FAT specification describes it (not through
// fat.go's constants), decides the FAT type from the cluster count as every
// reader does, walks every directory, and checks the rules MirageOS's reader
// imposes (ocaml-fat's src/fat_boot_sector.ml, src/fat_entry.ml and
// src/fat_name.ml): LFN with a NUL unit before every entry, no
// volume-label entry, contiguous chains ending in an end-of-chain mark.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf16"
)

// fatVol is what parseFAT learned of a volume.
type fatVol struct {
	r                         io.ReaderAt
	bps, spc, reserved, nfats int64
	rootEnts, fatSz, totSecs  int64
	clusters                  int64
	fat32                     bool
	rootClus                  uint32
	rootStart, dataStart      int64 // bytes
	media, secPerTrk, heads   int
	hidden                    uint32
	serial                    uint32
	bootSector                []byte
}

// fatItem is one file or directory found in a volume.
type fatItem struct {
	path    string
	short   string // "NAME.EXT" as stored
	dir     bool
	size    int64
	cluster uint32
	attr    byte
	wdate   uint16
}

func le16(b []byte, off int) int64 { return int64(binary.LittleEndian.Uint16(b[off:])) }
func le32(b []byte, off int) int64 { return int64(binary.LittleEndian.Uint32(b[off:])) }

// parseFAT reads and checks a volume's structure; it returns the first
// violation found as an error.
func parseFAT(r io.ReaderAt, size int64) (*fatVol, []fatItem, error) {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		return nil, nil, fmt.Errorf("boot sector: %w", err)
	}
	v := &fatVol{r: r}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return nil, nil, fmt.Errorf("no 0x55AA signature")
	}
	v.bps, v.spc, v.reserved, v.nfats = le16(bs, 11), int64(bs[13]), le16(bs, 14), int64(bs[16])
	v.rootEnts, v.media = le16(bs, 17), int(bs[21])
	v.secPerTrk, v.heads, v.hidden = int(le16(bs, 24)), int(le16(bs, 26)), uint32(le32(bs, 28))
	tot16, tot32, fsz16 := le16(bs, 19), le32(bs, 32), le16(bs, 22)
	if v.bps != 512 && v.bps != 4096 {
		return nil, nil, fmt.Errorf("bytes per sector %d", v.bps)
	}
	if v.spc == 0 || v.spc&(v.spc-1) != 0 || v.bps*v.spc > 32<<10 {
		return nil, nil, fmt.Errorf("sectors per cluster %d", v.spc)
	}
	if v.nfats != 2 || v.reserved < 1 {
		return nil, nil, fmt.Errorf("%d FATs, %d reserved sectors", v.nfats, v.reserved)
	}
	if (tot16 == 0) == (tot32 == 0) {
		return nil, nil, fmt.Errorf("total sectors: 16-bit %d, 32-bit %d: exactly one must be set", tot16, tot32)
	}
	v.totSecs = max(tot16, tot32)
	if tot32 != 0 && tot32 < 1<<16 && fsz16 != 0 {
		return nil, nil, fmt.Errorf("FAT16 with %d sectors in the 32-bit field", tot32)
	}
	v.fatSz = fsz16
	if fsz16 == 0 {
		v.fatSz = le32(bs, 36)
		v.rootClus = uint32(le32(bs, 44))
	}
	rootSecs := (v.rootEnts*32 + v.bps - 1) / v.bps
	v.rootStart = (v.reserved + v.nfats*v.fatSz) * v.bps
	dataSec := v.reserved + v.nfats*v.fatSz + rootSecs
	v.dataStart = dataSec * v.bps
	if v.totSecs <= dataSec {
		return nil, nil, fmt.Errorf("no data area")
	}
	v.clusters = (v.totSecs - dataSec) / v.spc
	switch {
	case v.clusters < 4085:
		return nil, nil, fmt.Errorf("%d clusters: FAT12", v.clusters)
	case v.clusters < 65525:
		if fsz16 == 0 || v.rootEnts == 0 {
			return nil, nil, fmt.Errorf("FAT16 cluster count %d with FAT32 fields", v.clusters)
		}
		v.serial = uint32(le32(bs, 39))
		if bs[38] != 0x29 || string(bs[54:62]) != "FAT16   " {
			return nil, nil, fmt.Errorf("FAT16 extended boot signature or type")
		}
	default:
		v.fat32 = true
		if fsz16 != 0 || v.rootEnts != 0 || tot16 != 0 || v.rootClus < 2 {
			return nil, nil, fmt.Errorf("FAT32 cluster count %d with FAT16 fields", v.clusters)
		}
		v.serial = uint32(le32(bs, 67))
		if bs[66] != 0x29 || string(bs[82:90]) != "FAT32   " {
			return nil, nil, fmt.Errorf("FAT32 extended boot signature or type")
		}
	}
	if v.totSecs*v.bps > size {
		return nil, nil, fmt.Errorf("volume of %d bytes on an image of %d", v.totSecs*v.bps, size)
	}
	if v.fatSz*v.bps < (v.clusters+2)*v.entrySize() {
		return nil, nil, fmt.Errorf("FAT of %d sectors too small for %d clusters", v.fatSz, v.clusters)
	}
	v.bootSector = make([]byte, v.bps)
	if _, err := r.ReadAt(v.bootSector, 0); err != nil {
		return nil, nil, err
	}
	if v.fat32 {
		if err := v.checkFAT32Sectors(); err != nil {
			return nil, nil, err
		}
	}
	if err := v.compareFATs(); err != nil {
		return nil, nil, err
	}
	if e0, e1 := v.entry(0), v.entry(1); e0&0xFF != 0xF8 || !v.isEOC(e1) {
		return nil, nil, fmt.Errorf("FAT[0]=%#x FAT[1]=%#x", e0, e1)
	}
	var items []fatItem
	var err error
	if v.fat32 {
		err = v.walkChainDir(v.rootClus, "", 0, &items, 0)
	} else {
		buf := make([]byte, v.rootEnts*32)
		if _, err := r.ReadAt(buf, v.rootStart); err != nil {
			return nil, nil, err
		}
		err = v.walkDir(buf, "", 0, 0, &items, 0)
	}
	return v, items, err
}

func (v *fatVol) entrySize() int64 {
	if v.fat32 {
		return 4
	}
	return 2
}

// entry reads FAT #1's entry for cluster c.
func (v *fatVol) entry(c int64) uint32 {
	var b [4]byte
	es := v.entrySize()
	if _, err := v.r.ReadAt(b[:es], v.reserved*v.bps+c*es); err != nil {
		return 0xDEAD
	}
	if v.fat32 {
		return binary.LittleEndian.Uint32(b[:]) & 0x0FFFFFFF
	}
	return uint32(binary.LittleEndian.Uint16(b[:]))
}

func (v *fatVol) isEOC(e uint32) bool {
	if v.fat32 {
		return e >= 0x0FFFFFF8
	}
	return e >= 0xFFF8
}

// compareFATs checks both FATs are identical (sampled when large).
func (v *fatVol) compareFATs() error {
	n := v.fatSz * v.bps
	const chunk = 1 << 20
	a, b := make([]byte, chunk), make([]byte, chunk)
	step := int64(chunk)
	if n > 64<<20 {
		step = n / 16 // sample 16 windows
	}
	for off := int64(0); off < n; off += step {
		l := min(chunk, n-off)
		if _, err := v.r.ReadAt(a[:l], v.reserved*v.bps+off); err != nil {
			return err
		}
		if _, err := v.r.ReadAt(b[:l], v.reserved*v.bps+n+off); err != nil {
			return err
		}
		if !bytes.Equal(a[:l], b[:l]) {
			return fmt.Errorf("FAT #1 and #2 differ near offset %d", off)
		}
	}
	return nil
}

// checkFAT32Sectors checks FSInfo and the backup boot sector.
func (v *fatVol) checkFAT32Sectors() error {
	bs := v.bootSector
	fsi, bk := le16(bs, 48), le16(bs, 50)
	if fsi != 1 || bk != 6 {
		return fmt.Errorf("FSInfo at %d, backup boot at %d", fsi, bk)
	}
	s := make([]byte, v.bps)
	if _, err := v.r.ReadAt(s, fsi*v.bps); err != nil {
		return err
	}
	if le32(s, 0) != 0x41615252 || le32(s, 484) != 0x61417272 || le32(s, 508) != 0xAA550000 {
		return fmt.Errorf("FSInfo signatures")
	}
	backup := make([]byte, v.bps)
	if _, err := v.r.ReadAt(backup, bk*v.bps); err != nil {
		return err
	}
	if !bytes.Equal(backup, bs) {
		return fmt.Errorf("backup boot sector differs")
	}
	return nil
}

// chain follows a chain from c, checking it is contiguous, and returns its
// length. Long chains are checked at their start and end only.
func (v *fatVol) chain(c uint32, want int64) (int64, error) {
	if c < 2 || int64(c) >= v.clusters+2 {
		return 0, fmt.Errorf("cluster %d out of range", c)
	}
	if want > 0 && int64(c)+want > v.clusters+2 {
		return 0, fmt.Errorf("chain of %d from %d past the end", want, c)
	}
	check := func(i int64) error {
		e := v.entry(int64(c) + i)
		if want > 0 && i == want-1 {
			if !v.isEOC(e) {
				return fmt.Errorf("chain from %d: entry %d is %#x, want end of chain", c, i, e)
			}
			return nil
		}
		if int64(e) != int64(c)+i+1 {
			return fmt.Errorf("chain from %d: entry %d is %#x, not contiguous", c, i, e)
		}
		return nil
	}
	if want <= 0 { // unknown length (directories): follow to the end
		for i := int64(0); ; i++ {
			e := v.entry(int64(c) + i)
			if v.isEOC(e) {
				return i + 1, nil
			}
			if int64(e) != int64(c)+i+1 || i > 1<<16 {
				return 0, fmt.Errorf("directory chain from %d: entry %d is %#x", c, i, e)
			}
		}
	}
	for i := int64(0); i < want; i++ {
		if i == 4096 && want > 8192 {
			i = want - 4096
		}
		if err := check(i); err != nil {
			return 0, err
		}
	}
	return want, nil
}

func (v *fatVol) clusterOff(c uint32) int64 { return v.dataStart + int64(c-2)*v.bps*v.spc }

func (v *fatVol) walkChainDir(c uint32, dir string, parent uint32, items *[]fatItem, depth int) error {
	n, err := v.chain(c, 0)
	if err != nil {
		return fmt.Errorf("dir %q: %w", dir, err)
	}
	buf := make([]byte, n*v.bps*v.spc)
	if _, err := v.r.ReadAt(buf, v.clusterOff(c)); err != nil {
		return err
	}
	return v.walkDir(buf, dir, c, parent, items, depth)
}

// walkDir parses one directory's entries.
func (v *fatVol) walkDir(buf []byte, dir string, self, parent uint32, items *[]fatItem, depth int) error {
	if depth > 200 {
		return fmt.Errorf("dir %q: too deep", dir)
	}
	var lfn []uint16
	var lfnSum byte
	nextSeq := 0
	isRoot := dir == ""
	for off := 0; off+32 <= len(buf); off += 32 {
		e := buf[off : off+32]
		if e[0] == 0 {
			if lfn != nil {
				return fmt.Errorf("dir %q: LFN without its entry at the end", dir)
			}
			// The rest must be free too.
			if bytes.ContainsFunc(buf[off:], func(r rune) bool { return r != 0 }) {
				return fmt.Errorf("dir %q: entries after the end marker", dir)
			}
			return nil
		}
		if e[0] == 0xE5 {
			return fmt.Errorf("dir %q: deleted entry", dir)
		}
		attr := e[11]
		if attr&0x3F == 0x0F {
			seq := int(e[0] & 0x1F)
			if e[0]&0x40 != 0 {
				if lfn != nil {
					return fmt.Errorf("dir %q: LFN restarts", dir)
				}
				lfn = make([]uint16, 13*seq)
				lfnSum = e[13]
			} else if lfn == nil || seq != nextSeq {
				return fmt.Errorf("dir %q: LFN sequence broken at %d", dir, seq)
			}
			if seq < 1 || e[13] != lfnSum || le16(e, 26) != 0 {
				return fmt.Errorf("dir %q: bad LFN entry", dir)
			}
			part := lfn[(seq-1)*13:]
			for i := 0; i < 5; i++ {
				part[i] = uint16(le16(e, 1+2*i))
			}
			for i := 0; i < 6; i++ {
				part[5+i] = uint16(le16(e, 14+2*i))
			}
			for i := 0; i < 2; i++ {
				part[11+i] = uint16(le16(e, 28+2*i))
			}
			nextSeq = seq - 1
			continue
		}
		if attr&0x08 != 0 {
			return fmt.Errorf("dir %q: volume-label entry %q", dir, e[:11])
		}
		name11 := string(e[:11])
		cl := uint32(le16(e, 26)) | uint32(le16(e, 20))<<16
		if name11 == ".          " || name11 == "..         " {
			if isRoot || lfn != nil {
				return fmt.Errorf("dir %q: misplaced dot entry", dir)
			}
			want := self
			if name11[1] == '.' {
				want = parent
			}
			if cl != want || attr&0x10 == 0 {
				return fmt.Errorf("dir %q: %q points to cluster %d, want %d", dir, strings.TrimSpace(name11), cl, want)
			}
			continue
		}
		if lfn == nil || nextSeq != 0 {
			return fmt.Errorf("dir %q: entry %q without a complete long name", dir, name11)
		}
		var sum byte
		for _, c := range e[:11] {
			sum = (sum>>1 | sum<<7) + c
		}
		if sum != lfnSum {
			return fmt.Errorf("dir %q: LFN checksum mismatch for %q", dir, name11)
		}
		// Units, a NUL, then only 0xFFFF.
		end := -1
		for i, u := range lfn {
			if u == 0 {
				end = i
				break
			}
		}
		if end < 0 {
			return fmt.Errorf("dir %q: LFN of %q without a NUL unit", dir, name11)
		}
		for _, u := range lfn[end+1:] {
			if u != 0xFFFF {
				return fmt.Errorf("dir %q: LFN of %q not padded with 0xFFFF", dir, name11)
			}
		}
		if len(lfn)-end > 13 {
			return fmt.Errorf("dir %q: LFN of %q has a needless entry", dir, name11)
		}
		name := string(utf16.Decode(lfn[:end]))
		lfn = nil
		p := name
		if dir != "" {
			p = dir + "/" + name
		}
		short := strings.TrimRight(name11[:8], " ")
		if ext := strings.TrimRight(name11[8:], " "); ext != "" {
			short += "." + ext
		}
		it := fatItem{path: p, short: short, dir: attr&0x10 != 0, size: le32(e, 28), cluster: cl, attr: attr, wdate: uint16(le16(e, 24))}
		*items = append(*items, it)
		if it.dir {
			if it.size != 0 {
				return fmt.Errorf("%q: directory with size %d", p, it.size)
			}
			parentOfChild := self // ".." of a root child is 0, even on FAT32
			if isRoot {
				parentOfChild = 0
			}
			if err := v.walkChainDir(cl, p, parentOfChild, items, depth+1); err != nil {
				return err
			}
		} else if it.size > 0 {
			cs := v.bps * v.spc
			if _, err := v.chain(cl, (it.size+cs-1)/cs); err != nil {
				return fmt.Errorf("%q: %w", p, err)
			}
		} else if cl != 0 {
			return fmt.Errorf("%q: empty file with cluster %d", p, cl)
		}
	}
	if lfn != nil {
		return fmt.Errorf("dir %q: LFN without its entry", dir)
	}
	return nil
}

// readFile reads a parsed file's content (contiguous by the checks above).
func (v *fatVol) readFile(it fatItem) ([]byte, error) {
	b := make([]byte, it.size)
	if it.size == 0 {
		return b, nil
	}
	_, err := v.r.ReadAt(b, v.clusterOff(it.cluster))
	return b, err
}

// writeSparse materializes l at name: zero extents and blob extents longer
// than skipBlob bytes (virtual big files) are left as holes.
func writeSparse(l *Layout, name string, skipBlob int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(l.Size()); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for e := range l.Extents() {
		if e.Kind == ExtentZero || (e.Kind == ExtentBlob && skipBlob > 0 && e.Len > skipBlob) {
			continue
		}
		for off := e.Off; off < e.Off+e.Len; {
			n := min(int64(len(buf)), e.Off+e.Len-off)
			if _, err := l.ReadAt(buf[:n], off); err != nil && err != io.EOF {
				return err
			}
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return err
			}
			off += n
		}
	}
	return f.Close()
}
