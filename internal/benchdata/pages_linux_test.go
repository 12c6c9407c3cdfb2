package benchdata

import (
	"syscall"
	"testing"
)

// BenchmarkTouchFreshPage measures what the machine charges for the first
// write to a page of memory the process has just mapped: the page fault
// (and the zeroed page) every byte a growing heap keeps costs once. A
// benchmark that keeps what it collects (the in-memory store keeps every
// event) pays it for each byte it keeps, whatever the code does with them;
// BENCHMARKS.md's account of issue 16's context figure rests on it.
func BenchmarkTouchFreshPage(b *testing.B) {
	const page, chunk = 4096, 64 << 20
	b.ReportAllocs()
	var mem []byte
	off := chunk
	for i := 0; b.Loop(); i++ {
		if off == chunk {
			if mem != nil {
				if err := syscall.Munmap(mem); err != nil {
					b.Fatal(err)
				}
			}
			var err error
			if mem, err = syscall.Mmap(-1, 0, chunk, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE); err != nil {
				b.Fatal(err)
			}
			off = 0
		}
		mem[off] = byte(i)
		off += page
	}
	if err := syscall.Munmap(mem); err != nil {
		b.Fatal(err)
	}
}
