package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode/utf16"
)

// partition is one GPT entry of a disk image.
type partition struct {
	Label  string
	Type   string // type GUID, lowercase
	Offset int64  // bytes
	Size   int64  // bytes
}

const (
	espType = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	sector  = 512
)

// readGPT reads the primary GPT of a raw disk image. Only what the test
// needs: labels, types and extents.
func readGPT(path string) ([]partition, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading partition table: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 92)
	if _, err := f.ReadAt(hdr, sector); err != nil {
		return nil, fmt.Errorf("reading GPT header of %s: %w", path, err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, fmt.Errorf("%s: no GPT header at LBA 1", path)
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(hdr[72:80]))
	n := binary.LittleEndian.Uint32(hdr[80:84])
	size := binary.LittleEndian.Uint32(hdr[84:88])
	if n > 1024 || size < 128 || size > 4096 {
		return nil, fmt.Errorf("%s: implausible GPT (%d entries of %d bytes)", path, n, size)
	}
	buf := make([]byte, int(n)*int(size))
	if _, err := f.ReadAt(buf, entriesLBA*sector); err != nil {
		return nil, fmt.Errorf("reading GPT entries of %s: %w", path, err)
	}
	var parts []partition
	for i := 0; i < int(n); i++ {
		e := buf[i*int(size) : (i+1)*int(size)]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		first := int64(binary.LittleEndian.Uint64(e[32:40]))
		last := int64(binary.LittleEndian.Uint64(e[40:48]))
		u16 := make([]uint16, 36)
		for j := range u16 {
			u16[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		parts = append(parts, partition{
			Label:  strings.TrimRight(string(utf16.Decode(u16)), "\x00"),
			Type:   guidString(e[:16]),
			Offset: first * sector,
			Size:   (last - first + 1) * sector,
		})
	}
	return parts, nil
}

// guidString formats a mixed-endian GPT GUID.
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

func findPartition(parts []partition, match func(partition) bool, what string) (partition, error) {
	for _, p := range parts {
		if match(p) {
			return p, nil
		}
	}
	return partition{}, fmt.Errorf("the image has no %s partition", what)
}

// copySparse copies src to dst keeping holes, so that a 4 GiB image with
// 600 MiB of data costs 600 MiB per copy.
func copySparse(src, dst string) error {
	out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("copying %s: %v: %s", src, err, bytes.TrimSpace(out))
	}
	return nil
}

// putOnESP writes files onto the disk's ESP with mtools, at the partition's
// offset, without mounting anything. Keys are paths on the ESP ("/omerta.yaml").
func putOnESP(disk string, files map[string][]byte) error {
	parts, err := readGPT(disk)
	if err != nil {
		return err
	}
	esp, err := findPartition(parts, func(p partition) bool { return p.Type == espType }, "EFI system")
	if err != nil {
		return err
	}
	img := fmt.Sprintf("%s@@%d", disk, esp.Offset)
	tmp, err := os.MkdirTemp("", "omerta-e2e-esp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for name, data := range files {
		if dir := filepath.Dir(name); dir != "/" {
			// mmd fails when the directory exists; that is fine.
			_ = mtools("mmd", "-i", img, "::"+dir)
		}
		local := filepath.Join(tmp, filepath.Base(name))
		if err := os.WriteFile(local, data, 0o644); err != nil {
			return err
		}
		if err := mtools("mcopy", "-o", "-i", img, local, "::"+name); err != nil {
			return err
		}
	}
	return nil
}

func mtools(args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	// mtools refuses FAT32 file systems that the firmware reads fine when
	// their geometry looks unusual to it.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// readFromPartition reads one file from the ext4 partition labelled label,
// after the guest has shut down. It mounts a copy read-only at the
// partition's offset; where this kernel cannot (no loop device or no ext4
// in a container), it extracts the partition and reads the file with
// debugfs. It says which way it went.
func readFromPartition(disk, label, path, work string) ([]byte, string, error) {
	parts, err := readGPT(disk)
	if err != nil {
		return nil, "", err
	}
	p, err := findPartition(parts, func(p partition) bool { return p.Label == label }, label)
	if err != nil {
		return nil, "", err
	}
	mnt := filepath.Join(work, "mnt-"+label)
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return nil, "", err
	}
	opts := fmt.Sprintf("ro,loop,noload,offset=%d,sizelimit=%d", p.Offset, p.Size)
	if out, err := exec.Command("mount", "-t", "ext4", "-o", opts, disk, mnt).CombinedOutput(); err == nil {
		defer exec.Command("umount", mnt).Run()
		data, err := os.ReadFile(filepath.Join(mnt, path))
		return data, "mounted the " + label + " partition read-only at its offset", err
	} else {
		mountErr := strings.TrimSpace(string(out))
		part := filepath.Join(work, label+".img")
		if err := extractRange(disk, part, p.Offset, p.Size); err != nil {
			return nil, "", err
		}
		defer os.Remove(part)
		dst := filepath.Join(work, label+"-"+filepath.Base(path))
		out, err := exec.Command("debugfs", "-R", fmt.Sprintf("dump %s %s", path, dst), part).CombinedOutput()
		if err != nil {
			return nil, "", fmt.Errorf("debugfs dump %s: %v: %s", path, err, out)
		}
		data, err := os.ReadFile(dst)
		if err != nil {
			return nil, "", fmt.Errorf("debugfs did not dump %s (%s): %w", path, strings.TrimSpace(string(out)), err)
		}
		return data, fmt.Sprintf("mount failed (%s); read with debugfs from the extracted %s partition", mountErr, label), nil
	}
}

// extractRange copies [off, off+n) of src into a new sparse file dst,
// skipping all-zero blocks.
func extractRange(src, dst string, off, n int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	r := io.NewSectionReader(in, off, n)
	var pos int64
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			if !bytes.Equal(buf[:k], zero[:k]) {
				if _, err := out.WriteAt(buf[:k], pos); err != nil {
					return err
				}
			}
			pos += int64(k)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := out.Truncate(n); err != nil {
		return err
	}
	return out.Close()
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
