// etcdctl, built from the pinned go.etcd.io/etcd/etcdctl/v3 module (see ../../go.mod).
// The body is upstream's etcdctl main.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() {
	ctlv3.MustStart()
}
