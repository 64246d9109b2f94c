// franz-go client program driven by tests/integration.
//
//	franz-client --bootstrap H:P create-topics [--partitions N] TOPIC...
//	franz-client --bootstrap H:P produce --start S --count N --base-ts T TOPIC=CODEC...
//	franz-client --bootstrap H:P consume --count N [--partitions P] --out-dir D [--timeout S] TOPIC...
//	franz-client --bootstrap H:P offsets-for-times TOPIC:PARTITION:TS...
//
// Record content and the dump format are those of tests/integration/clients/common.py.
// The producer keeps franz-go's defaults (acks=all, idempotence on) apart from
// linger and compression.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const client = "franz-go"

func key(i int64) []byte { return []byte("key-" + strconv.FormatInt(i%1000, 10)) }

func value(codec string, i int64) []byte {
	pat := fmt.Sprintf("%08x", uint32(uint64(i)*2654435761))
	s := client + "-" + codec + "-" + strconv.FormatInt(i, 10) + "-" + strings.Repeat(pat, 13)
	return []byte(s[:100])
}

func headers(codec string, i int64) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: "src", Value: []byte(client + "-" + codec)},
		{Key: "idx", Value: []byte(strconv.FormatInt(i, 10))},
	}
}

func hx(b []byte) string {
	if b == nil {
		return "-"
	}
	return hex.EncodeToString(b)
}

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	os.Exit(1)
}

func codecOf(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	die("unknown codec %q", name)
	return kgo.NoCompression()
}

func newClient(bootstrap string, opts ...kgo.Opt) *kgo.Client {
	base := []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.RequestTimeoutOverhead(5 * time.Second),
		kgo.RetryTimeout(30 * time.Second),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		die("client: %v", err)
	}
	return cl
}

func main() {
	if len(os.Args) < 4 || os.Args[1] != "--bootstrap" {
		die("usage: franz-client --bootstrap H:P <command> ... (see source)")
	}
	bootstrap, cmd, rest := os.Args[2], os.Args[3], os.Args[4:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	partitions := fs.Int("partitions", 6, "partitions")
	start := fs.Int64("start", 0, "first record index")
	count := fs.Int64("count", 0, "records (per topic)")
	baseTs := fs.Int64("base-ts", 0, "timestamp of record 0 (ms)")
	outDir := fs.String("out-dir", ".", "dump directory")
	timeout := fs.Float64("timeout", 60, "seconds")
	if err := fs.Parse(rest); err != nil {
		die("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch cmd {
	case "create-topics":
		cl := newClient(bootstrap)
		defer cl.Close()
		adm := kadm.NewClient(cl)
		cctx, c2 := context.WithTimeout(ctx, 30*time.Second)
		defer c2()
		res, err := adm.CreateTopics(cctx, int32(*partitions), 1, nil, fs.Args()...)
		if err != nil {
			die("create topics: %v", err)
		}
		if err := res.Error(); err != nil {
			die("create topics: %v", err)
		}
		fmt.Printf("{\"created\": %d}\n", len(fs.Args()))
	case "produce":
		os.Exit(produce(ctx, bootstrap, *start, *count, *baseTs, fs.Args()))
	case "consume":
		os.Exit(consume(ctx, bootstrap, *count, *partitions, *outDir, *timeout, fs.Args()))
	case "offsets-for-times":
		cl := newClient(bootstrap)
		defer cl.Close()
		adm := kadm.NewClient(cl)
		for _, q := range fs.Args() { // one call per query: several may name the same partition
			i := strings.LastIndex(q, ":")
			j := strings.LastIndex(q[:i], ":")
			topic := q[:j]
			p, _ := strconv.Atoi(q[j+1 : i])
			ts, _ := strconv.ParseInt(q[i+1:], 10, 64)
			qctx, c2 := context.WithTimeout(ctx, 20*time.Second)
			res, err := adm.ListOffsetsAfterMilli(qctx, ts, topic)
			c2()
			if err != nil {
				die("list offsets: %v", err)
			}
			lo, ok := res.Lookup(topic, int32(p))
			if !ok {
				die("no answer for %s", q)
			}
			if lo.Err != nil {
				die("list offsets %s: %v", q, lo.Err)
			}
			off := lo.Offset
			// kadm answers "no record at/after ts" with the end offset (timestamp -1).
			if lo.Timestamp < 0 {
				off = -1
			}
			fmt.Printf("%s %d %d %d\n", topic, p, ts, off)
		}
	default:
		die("unknown command %s", cmd)
	}
}

func produce(ctx context.Context, bootstrap string, start, count, baseTs int64, specs []string) int {
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	for _, spec := range specs {
		eq := strings.LastIndex(spec, "=")
		topic, codec := spec[:eq], spec[eq+1:]
		cl := newClient(bootstrap,
			kgo.ProducerLinger(5*time.Millisecond),
			kgo.ProducerBatchCompression(codecOf(codec)),
			kgo.MaxBufferedRecords(200000),
			// No RecordDeliveryTimeout: franz-go measures it from the record's
			// timestamp, which these records set in the past. The orchestrator's
			// process timeout bounds the run instead.
		)
		var wg sync.WaitGroup
		for i := start; i < start+count; i++ {
			r := &kgo.Record{Topic: topic, Key: key(i), Value: value(codec, i),
				Headers: headers(codec, i), Timestamp: time.UnixMilli(baseTs + 2*i)}
			wg.Add(1)
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					acked.Add(1)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			die("flush: %v", err)
		}
		wg.Wait()
		cl.Close()
	}
	errs := ""
	if e := firstErr.Load(); e != nil {
		errs = strconv.Quote(e.(string))
	}
	fmt.Printf("{\"acked\": %d, \"failed\": %d, \"errors\": [%s]}\n", acked.Load(), failed.Load(), errs)
	if failed.Load() != 0 || acked.Load() != count*int64(len(specs)) {
		return 1
	}
	return 0
}

func consume(ctx context.Context, bootstrap string, count int64, partitions int, outDir string,
	timeout float64, topics []string) int {
	assign := map[string]map[int32]kgo.Offset{}
	files := map[string]*bufio.Writer{}
	got := map[string]int64{}
	for _, t := range topics {
		m := map[int32]kgo.Offset{}
		for p := 0; p < partitions; p++ {
			m[int32(p)] = kgo.NewOffset().AtStart()
		}
		assign[t] = m
		f, err := os.Create(filepath.Join(outDir, t+".tsv"))
		if err != nil {
			die("%v", err)
		}
		defer f.Close()
		w := bufio.NewWriterSize(f, 1<<20)
		defer w.Flush()
		files[t] = w
	}
	cl := newClient(bootstrap, kgo.ConsumePartitions(assign),
		kgo.FetchMaxBytes(16<<20), kgo.FetchMaxPartitionBytes(4<<20))
	defer cl.Close()
	need := count * int64(len(topics))
	var total int64
	deadline := time.Now().Add(time.Duration(timeout * float64(time.Second)))
	var sb strings.Builder
	for total < need && time.Now().Before(deadline) {
		pctx, c2 := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := cl.PollRecords(pctx, 20000)
		c2()
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded {
				fmt.Fprintf(os.Stderr, "fetch error %s/%d: %v\n", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			sb.Reset()
			fmt.Fprintf(&sb, "%d\t%d\t%d\t%s\t%s\t", r.Partition, r.Offset, r.Timestamp.UnixMilli(), hx(r.Key), hx(r.Value))
			for k, h := range r.Headers {
				if k > 0 {
					sb.WriteByte(';')
				}
				sb.WriteString(h.Key + "=" + hx(h.Value))
			}
			sb.WriteByte('\n')
			files[r.Topic].WriteString(sb.String())
			got[r.Topic]++
			total++
		})
	}
	parts := []string{}
	for _, t := range topics {
		parts = append(parts, fmt.Sprintf("%q: %d", t, got[t]))
	}
	fmt.Printf("{\"consumed\": {%s}}\n", strings.Join(parts, ", "))
	if total < need {
		return 1
	}
	return 0
}
