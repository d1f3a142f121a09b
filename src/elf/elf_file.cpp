#include "elf/elf_file.hpp"

#include <elf.h>

#include <algorithm>
#include <array>

namespace gilstat::elf {

namespace {

// Upper bounds that keep a hostile file from making us loop for long; real
// files are far below them.
constexpr uint64_t kMaxVersionDefinitions = 1 << 16;

void set_error(std::string* error, std::string text) {
  if (error) *error = std::move(text);
}

bool is_global_binding(uint8_t binding) {
  return binding == STB_GLOBAL || binding == STB_WEAK || binding == STB_GNU_UNIQUE;
}

}  // namespace

uint32_t gnu_hash(std::string_view name) {
  uint32_t h = 5381;
  for (unsigned char c : name) h = h * 33 + c;
  return h;
}

std::optional<ElfFile> ElfFile::parse(std::span<const std::byte> data, std::string* error) {
  ElfFile file{ByteView(data)};
  if (!file.load_tables(error)) return std::nullopt;
  file.load_symbol_tables();
  file.load_versions();
  return file;
}

bool ElfFile::load_tables(std::string* error) {
  auto header = data_.read<Elf64_Ehdr>(0);
  if (!header) {
    set_error(error, "file too small for an ELF header");
    return false;
  }
  const unsigned char* ident = header->e_ident;
  if (ident[EI_MAG0] != ELFMAG0 || ident[EI_MAG1] != ELFMAG1 || ident[EI_MAG2] != ELFMAG2 ||
      ident[EI_MAG3] != ELFMAG3) {
    set_error(error, "not an ELF file");
    return false;
  }
  if (ident[EI_CLASS] != ELFCLASS64 || ident[EI_DATA] != ELFDATA2LSB) {
    set_error(error, "not a 64-bit little-endian ELF file");
    return false;
  }
  type_ = header->e_type;
  machine_ = header->e_machine;

  // Section header table (read first: extended numbering keeps the real
  // counts in section 0).
  uint64_t shnum = header->e_shnum;
  uint64_t shstrndx = header->e_shstrndx;
  uint64_t phnum = header->e_phnum;
  std::optional<Elf64_Shdr> section0;
  if (header->e_shoff != 0) {
    if (header->e_shentsize != sizeof(Elf64_Shdr)) {
      set_error(error, "unexpected section header size");
      return false;
    }
    section0 = data_.read<Elf64_Shdr>(header->e_shoff);
    if (!section0) {
      set_error(error, "section header table outside the file");
      return false;
    }
    if (shnum == 0) shnum = section0->sh_size;
    if (shstrndx == SHN_XINDEX) shstrndx = section0->sh_link;
    if (phnum == PN_XNUM) phnum = section0->sh_info;
  } else {
    shnum = 0;
  }

  if (phnum > 0) {
    if (header->e_phentsize != sizeof(Elf64_Phdr)) {
      set_error(error, "unexpected program header size");
      return false;
    }
    auto bytes = checked_mul(phnum, sizeof(Elf64_Phdr));
    if (!bytes || !data_.slice(header->e_phoff, *bytes)) {
      set_error(error, "program header table outside the file");
      return false;
    }
    segments_.reserve(phnum);
    for (uint64_t i = 0; i < phnum; ++i) {
      auto ph = data_.read<Elf64_Phdr>(header->e_phoff + i * sizeof(Elf64_Phdr));
      segments_.push_back(Segment{ph->p_type, ph->p_flags, ph->p_offset, ph->p_vaddr, ph->p_filesz,
                                  ph->p_memsz, ph->p_align});
    }
  }

  if (shnum > 0) {
    auto bytes = checked_mul(shnum, sizeof(Elf64_Shdr));
    if (!bytes || !data_.slice(header->e_shoff, *bytes)) {
      set_error(error, "section header table outside the file");
      return false;
    }
    std::vector<Elf64_Shdr> raw(shnum);
    for (uint64_t i = 0; i < shnum; ++i) {
      raw[i] = *data_.read<Elf64_Shdr>(header->e_shoff + i * sizeof(Elf64_Shdr));
    }
    std::optional<ByteView> names;
    if (shstrndx < shnum && raw[shstrndx].sh_type == SHT_STRTAB) {
      names = data_.slice(raw[shstrndx].sh_offset, raw[shstrndx].sh_size);
    }
    sections_.reserve(shnum);
    for (const Elf64_Shdr& sh : raw) {
      std::string_view name;
      if (names) name = names->cstring(sh.sh_name, 1024).value_or(std::string_view{});
      sections_.push_back(Section{name, sh.sh_type, sh.sh_flags, sh.sh_addr, sh.sh_offset,
                                  sh.sh_size, sh.sh_link, sh.sh_info, sh.sh_entsize});
    }
  }
  return true;
}

void ElfFile::load_symbol_tables() {
  auto load = [&](uint32_t sh_type) -> std::pair<std::optional<SymbolTableInfo>, size_t> {
    for (size_t i = 0; i < sections_.size(); ++i) {
      const Section& s = sections_[i];
      if (s.type != sh_type) continue;
      if (s.entsize != sizeof(Elf64_Sym) || s.link >= sections_.size()) return {std::nullopt, 0};
      const Section& str = sections_[s.link];
      if (str.type != SHT_STRTAB) return {std::nullopt, 0};
      auto symbols = data_.slice(s.offset, s.size);
      auto strings = data_.slice(str.offset, str.size);
      if (!symbols || !strings) return {std::nullopt, 0};
      return {SymbolTableInfo{*symbols, *strings, s.size / sizeof(Elf64_Sym)}, i};
    }
    return {std::nullopt, 0};
  };
  auto [dynsym, dynsym_index] = load(SHT_DYNSYM);
  dynsym_ = dynsym;
  symtab_ = load(SHT_SYMTAB).first;
  if (!dynsym_) return;

  for (const Section& s : sections_) {
    if (s.type == SHT_GNU_HASH && s.link == dynsym_index) {
      gnu_hash_ = data_.slice(s.offset, s.size);
    } else if (s.type == SHT_GNU_versym) {
      auto bytes = checked_mul(dynsym_->count, sizeof(uint16_t));
      if (bytes && s.size >= *bytes) versym_ = data_.slice(s.offset, *bytes);
    }
  }
}

void ElfFile::load_versions() {
  if (!versym_) return;
  for (const Section& s : sections_) {
    if (s.type != SHT_GNU_verdef || s.link >= sections_.size()) continue;
    auto table = data_.slice(s.offset, s.size);
    const Section& str = sections_[s.link];
    auto strings = data_.slice(str.offset, str.size);
    if (!table || !strings) return;
    uint64_t offset = 0;
    const uint64_t count = std::min<uint64_t>(s.info, kMaxVersionDefinitions);
    for (uint64_t i = 0; i < count; ++i) {
      auto def = table->read<Elf64_Verdef>(offset);
      if (!def) return;
      if (def->vd_cnt >= 1) {
        auto aux_offset = checked_add(offset, def->vd_aux);
        auto aux = aux_offset ? table->read<Elf64_Verdaux>(*aux_offset) : std::nullopt;
        if (aux) {
          if (auto name = strings->cstring(aux->vda_name, 256)) {
            version_names_.push_back(VersionName{def->vd_ndx, *name});
          }
        }
      }
      if (def->vd_next == 0) return;
      auto next = checked_add(offset, def->vd_next);
      if (!next) return;
      offset = *next;
    }
    return;
  }
}

std::optional<Symbol> ElfFile::symbol_at(SymbolTable table, uint64_t index) const {
  const auto& info = table == SymbolTable::kDynamic ? dynsym_ : symtab_;
  if (!info || index >= info->count) return std::nullopt;
  auto raw = info->symbols.read<Elf64_Sym>(index * sizeof(Elf64_Sym));
  if (!raw) return std::nullopt;
  Symbol sym;
  sym.name = info->strings.cstring(raw->st_name, 4096).value_or(std::string_view{});
  sym.value = raw->st_value;
  sym.size = raw->st_size;
  sym.type = ELF64_ST_TYPE(raw->st_info);
  sym.binding = ELF64_ST_BIND(raw->st_info);
  sym.section = raw->st_shndx;
  sym.table = table;
  if (table == SymbolTable::kDynamic && versym_) {
    if (auto v = versym_->read<uint16_t>(index * sizeof(uint16_t))) {
      sym.hidden_version = (*v & 0x8000) != 0;
      const uint16_t version_index = *v & 0x7fff;
      if (version_index >= 2) {
        for (const VersionName& vn : version_names_) {
          if (vn.index == version_index) {
            sym.version = vn.name;
            break;
          }
        }
      }
    }
  }
  return sym;
}

namespace {

// Among the matches of one name, which one a lookup returns: an explicit
// version must match exactly; otherwise the default version beats a compat one.
class BestMatch {
 public:
  BestMatch(std::string_view name, std::string_view version) : name_(name), version_(version) {}

  // Returns true when the search can stop.
  bool offer(const Symbol& sym) {
    if (sym.name != name_ || sym.section == SHN_UNDEF) return false;
    if (sym.type == STT_SECTION || sym.type == STT_FILE) return false;
    if (sym.table == SymbolTable::kDynamic && !is_global_binding(sym.binding)) return false;
    if (!version_.empty()) {
      if (sym.version != version_) return false;
      best_ = sym;
      return true;
    }
    if (!sym.hidden_version) {
      best_ = sym;
      return true;
    }
    if (!best_) best_ = sym;
    return false;
  }
  const std::optional<Symbol>& best() const { return best_; }

 private:
  std::string_view name_;
  std::string_view version_;
  std::optional<Symbol> best_;
};

}  // namespace

std::optional<Symbol> ElfFile::gnu_hash_lookup(std::string_view name, std::string_view version,
                                               bool* usable) const {
  *usable = false;
  if (!gnu_hash_ || !dynsym_) return std::nullopt;
  const ByteView& table = *gnu_hash_;
  auto nbuckets = table.read<uint32_t>(0);
  auto symoffset = table.read<uint32_t>(4);
  auto bloom_size = table.read<uint32_t>(8);
  if (!nbuckets || !symoffset || !bloom_size || *nbuckets == 0) return std::nullopt;
  auto buckets_at = checked_add(16, uint64_t{*bloom_size} * 8);
  if (!buckets_at) return std::nullopt;
  auto chain_at = checked_add(*buckets_at, uint64_t{*nbuckets} * 4);
  if (!chain_at || *chain_at > table.size() || *symoffset > dynsym_->count) return std::nullopt;
  *usable = true;

  const uint32_t h = gnu_hash(name);
  auto first = table.read<uint32_t>(*buckets_at + uint64_t{h % *nbuckets} * 4);
  if (!first || *first < *symoffset) return std::nullopt;
  BestMatch match(name, version);
  for (uint64_t index = *first; index < dynsym_->count; ++index) {
    auto chain_entry = table.read<uint32_t>(*chain_at + (index - *symoffset) * 4);
    if (!chain_entry) break;
    if ((*chain_entry | 1) == (h | 1)) {
      if (auto sym = symbol_at(SymbolTable::kDynamic, index); sym && match.offer(*sym)) break;
    }
    if (*chain_entry & 1) break;
  }
  return match.best();
}

std::optional<Symbol> ElfFile::linear_lookup(SymbolTable table, std::string_view name,
                                             std::string_view version) const {
  BestMatch match(name, version);
  for_each_symbol(table, [&](const Symbol& sym) { return !match.offer(sym); });
  return match.best();
}

void ElfFile::for_each_symbol(SymbolTable table,
                              const std::function<bool(const Symbol&)>& fn) const {
  const auto& info = table == SymbolTable::kDynamic ? dynsym_ : symtab_;
  if (!info) return;
  for (uint64_t i = 0; i < info->count; ++i) {
    auto sym = symbol_at(table, i);
    if (sym && !fn(*sym)) return;
  }
}

std::optional<Symbol> ElfFile::find_dynamic_symbol(std::string_view name,
                                                   std::string_view version) const {
  bool usable = false;
  auto found = gnu_hash_lookup(name, version, &usable);
  if (usable) return found;
  return linear_lookup(SymbolTable::kDynamic, name, version);
}

std::optional<Symbol> ElfFile::find_static_symbol(std::string_view name) const {
  return linear_lookup(SymbolTable::kStatic, name, {});
}

std::optional<Symbol> ElfFile::find_symbol(std::string_view name, std::string_view version) const {
  if (auto sym = find_dynamic_symbol(name, version)) return sym;
  if (!version.empty()) return std::nullopt;
  return find_static_symbol(name);
}

std::optional<Section> ElfFile::section(std::string_view name) const {
  for (const Section& s : sections_) {
    if (s.name == name) return s;
  }
  return std::nullopt;
}

std::optional<std::span<const std::byte>> ElfFile::section_bytes(const Section& section) const {
  if (section.type == SHT_NOBITS) return std::nullopt;
  auto view = data_.slice(section.offset, section.size);
  if (!view) return std::nullopt;
  return view->span();
}

std::optional<Segment> ElfFile::first_load_segment() const {
  std::optional<Segment> first;
  for (const Segment& s : segments_) {
    if (s.type == PT_LOAD && (!first || s.vaddr < first->vaddr)) first = s;
  }
  return first;
}

std::optional<std::string_view> ElfFile::soname() const {
  for (const Section& s : sections_) {
    if (s.type != SHT_DYNAMIC || s.link >= sections_.size()) continue;
    auto table = data_.slice(s.offset, s.size);
    const Section& str = sections_[s.link];
    auto strings = data_.slice(str.offset, str.size);
    if (!table || !strings) return std::nullopt;
    for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= table->size(); off += sizeof(Elf64_Dyn)) {
      auto dyn = table->read<Elf64_Dyn>(off);
      if (!dyn || dyn->d_tag == DT_NULL) break;
      if (dyn->d_tag == DT_SONAME) return strings->cstring(dyn->d_un.d_val, 1024);
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::span<const std::byte>> ElfFile::bytes_at_vaddr(uint64_t vaddr,
                                                                  uint64_t size) const {
  auto end = checked_add(vaddr, size);
  if (!end) return std::nullopt;
  for (const Segment& s : segments_) {
    if (s.type != PT_LOAD || vaddr < s.vaddr) continue;
    auto segment_end = checked_add(s.vaddr, s.filesz);
    if (!segment_end || *end > *segment_end) continue;
    auto offset = checked_add(s.offset, vaddr - s.vaddr);
    if (!offset) continue;
    if (auto view = data_.slice(*offset, size)) return view->span();
  }
  return std::nullopt;
}

std::optional<std::string_view> ElfFile::cstring_at_vaddr(uint64_t vaddr,
                                                          uint64_t max_length) const {
  for (const Segment& s : segments_) {
    if (s.type != PT_LOAD || vaddr < s.vaddr || vaddr - s.vaddr >= s.filesz) continue;
    auto offset = checked_add(s.offset, vaddr - s.vaddr);
    if (!offset) continue;
    auto view = data_.slice(*offset, s.filesz - (vaddr - s.vaddr));
    if (!view) continue;
    return view->cstring(0, max_length);
  }
  return std::nullopt;
}

namespace {

// Walks the notes in `notes` (each header, name and descriptor padded to
// `align`) until `fn` returns true.
template <class Fn>
bool for_each_note(const ByteView& notes, uint64_t align, Fn&& fn) {
  const uint64_t pad = align == 8 ? 8 : 4;
  auto round_up = [&](uint64_t v) { return checked_add(v, pad - 1).value_or(0) & ~(pad - 1); };
  uint64_t offset = 0;
  while (auto header = notes.read<Elf64_Nhdr>(offset)) {
    const uint64_t name_at = offset + sizeof(Elf64_Nhdr);
    const uint64_t desc_at = round_up(name_at + header->n_namesz);
    const uint64_t next = round_up(desc_at + header->n_descsz);
    if (desc_at == 0 || next == 0 || next <= offset) return false;
    auto name = notes.slice(name_at, header->n_namesz);
    auto desc = notes.slice(desc_at, header->n_descsz);
    if (!name || !desc) return false;
    if (fn(*name, header->n_type, *desc)) return true;
    offset = next;
  }
  return false;
}

}  // namespace

std::optional<std::span<const std::byte>> ElfFile::build_id() const {
  std::optional<std::span<const std::byte>> found;
  auto match = [&](const ByteView& name, uint32_t type, const ByteView& desc) {
    // The name is "GNU\0".
    if (type != NT_GNU_BUILD_ID || name.size() != 4 || desc.size() == 0) return false;
    if (name.cstring(0, 4) != std::string_view("GNU")) return false;
    found = desc.span();
    return true;
  };
  for (const Segment& s : segments_) {
    if (s.type != PT_NOTE) continue;
    auto notes = data_.slice(s.offset, s.filesz);
    if (notes && for_each_note(*notes, s.align, match)) return found;
  }
  for (const Section& s : sections_) {
    if (s.type != SHT_NOTE) continue;
    auto bytes = section_bytes(s);
    // Section headers carry no note alignment here; the build-id's own
    // section is 4-aligned (and 8-aligned notes pad their 4-byte name alike).
    if (bytes && for_each_note(ByteView(*bytes), 4, match)) return found;
  }
  return std::nullopt;
}

std::optional<ElfFile::DebugLink> ElfFile::debug_link() const {
  auto s = section(".gnu_debuglink");
  if (!s) return std::nullopt;
  auto bytes = section_bytes(*s);
  if (!bytes) return std::nullopt;
  const ByteView view(*bytes);
  auto name = view.cstring(0, 4096);
  if (!name || name->empty()) return std::nullopt;
  // The CRC follows the name's NUL, at the next multiple of 4.
  const uint64_t crc_at = (name->size() + 1 + 3) & ~uint64_t{3};
  auto crc = view.read<uint32_t>(crc_at);
  if (!crc) return std::nullopt;
  return DebugLink{*name, *crc};
}

uint32_t debuglink_crc32(std::span<const std::byte> bytes, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::byte b : bytes) crc = table[(crc ^ static_cast<uint8_t>(b)) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    out += kDigits[static_cast<uint8_t>(b) >> 4];
    out += kDigits[static_cast<uint8_t>(b) & 0xf];
  }
  return out;
}

bool ElfFile::vaddr_is_loaded(uint64_t vaddr) const {
  for (const Segment& s : segments_) {
    if (s.type == PT_LOAD && vaddr >= s.vaddr && vaddr - s.vaddr < s.memsz) return true;
  }
  return false;
}

}  // namespace gilstat::elf
