// etcd, built from the pinned go.etcd.io/etcd/server/v3 module (see ../../go.mod).
// The body is upstream's etcd main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
