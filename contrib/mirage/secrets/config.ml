(* config.ml: a MirageOS 4 unikernel with two gitblk disks: the public site
   data, and a secret volume holding its keys (gitblk serves the secret
   export decrypted from NAME.age files in git; see "Secrets" in gitblk's
   README).

   Disks:
     site  tar_kv_ro over block_of_file "site": on Xen the first
           block_of_file, xenstore id 51728 (vdev=xvdb); on unix the file
           ./site; on solo5/hvt --block:site=FILE.
     keys  tar_kv_ro over the second device: on Xen (and Qubes) xenstore id
           51744 (vdev=xvdc), given explicitly so that it never depends on
           the order in which the tool numbers block_of_file devices;
           elsewhere block_of_file "keys" (./keys, --block:keys=FILE).
   Both are tar exports: a secret volume holds a few small files, and tar
   keeps their names exactly as in git. *)

open Mirage

let site = tar_kv_ro (block_of_file "site")

let keys_disk =
  match_impl
    Key.(value target)
    [
      (`Xen, block_of_xenstore_id "51744");
      (`Qubes, block_of_xenstore_id "51744");
    ]
    ~default:(block_of_file "keys")

let keys = tar_kv_ro keys_disk

let main = main ~packages:[ package "fmt" ] "Unikernel.Main" (kv_ro @-> kv_ro @-> job)

let () = register "secret-site" [ main $ site $ keys ]
