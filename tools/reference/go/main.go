// A reference server in Go, for the bench: a goroutine per connection on a
// net.Listener, blocking reads and writes — the code shape of step 02 —
// while Go's runtime parks each goroutine on its descriptor (EAGAIN) and
// resumes it from epoll_wait (netpoll), as step 10 does by hand.
//
// It answers what the bench asks: GET /hello (and /) with the steps' exact
// response, keep-alive; --mode echo sends every byte back. Standard library
// only. Ready line and stop as the steps: "listening on HOST:PORT" on
// stdout, SIGINT/SIGTERM stops it.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

var hello = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n")
var helloClose = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\nHello, World!\n")
var notFound = []byte("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n")

// serveHTTP answers requests until the client leaves: one request head at a
// time, a body (Content-Length) skipped, answers written as they are made;
// after a request with "Connection: close" it answers, then closes, as the
// steps do (a client opening a connection per request waits for that EOF).
func serveHTTP(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 16*1024)
	w := bufio.NewWriterSize(c, 16*1024)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		path := requestPath(line)
		length, closing := 0, false
		for {
			h, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(h) <= 2 {
				break
			}
			lower := bytes.ToLower(h)
			if bytes.HasPrefix(lower, []byte("content-length:")) {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(h[len("content-length:"):])))
			} else if bytes.HasPrefix(lower, []byte("connection:")) {
				closing = string(bytes.TrimSpace(lower[len("connection:"):])) == "close"
			}
		}
		if _, err := r.Discard(length); err != nil {
			return
		}
		switch {
		case closing && (path == "/hello" || path == "/"):
			w.Write(helloClose)
		case path == "/hello" || path == "/":
			w.Write(hello)
		default:
			w.Write(notFound)
		}
		if closing {
			w.Flush()
			return
		}
		// Answer what is here; keep answering pipelined requests first.
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// "GET /hello HTTP/1.1\r\n" -> "/hello"
func requestPath(line []byte) string {
	f := bytes.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return string(f[1])
}

func serveEcho(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 8080, "port, 0 = the kernel picks")
	mode := flag.String("mode", "http", "http or echo")
	flag.Parse()
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "reference-go:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		ln.Close()
	}()
	serve := serveHTTP
	if *mode == "echo" {
		serve = serveEcho
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return // the listener was closed: a stop
		}
		go serve(c)
	}
}
