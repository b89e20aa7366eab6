(* config.ml: a MirageOS 4 unikernel that reads a gitblk export as its disk.

   The disk is the unikernel's first block device: on Xen, block_of_file
   "site" becomes xenstore id 51728 (vdev=xvdb in the xl disk line); on unix,
   the file ./site; on solo5/hvt, the device named "site"
   (--block:site=FILE).

   SITE_FORMAT (read when running `mirage configure`) picks the reader:
     tar (default)  tar_kv_ro: ocaml-tar's tar-mirage over `gitblk serve
                    --format tar` (or the "tar" export)
     fat            fat_ro: ocaml-fat's fat-filesystem over `gitblk serve
                    --format fat` (or the "fat" export; FAT16 only, and on
                    Xen serve it with --sector-size 4096)
   Both give the same Mirage_kv.RO to unikernel.ml. *)

open Mirage

let disk = block_of_file "site"

let site =
  match Sys.getenv_opt "SITE_FORMAT" with
  | None | Some "" | Some "tar" -> tar_kv_ro disk
  | Some "fat" -> fat_ro disk
  | Some other -> failwith ("SITE_FORMAT: want tar or fat, got " ^ other)

let main =
  main ~packages:[ package "optint" ] "Unikernel.Main" (kv_ro @-> job)

let () = register "site" [ main $ site ]
